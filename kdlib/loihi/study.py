"""The Loihi stage (``04_loihi``) assembled: which students of stage 2 deploy, their tables and the stage's metrics.

:func:`deploy_students` decides, variant by variant, what is deployed and why the rest is not;
:func:`fixed_point_table`, :func:`lava_table`, :func:`energy_table` and :func:`deployed_table` (``deployed.csv``)
set the deployed students side by side; :func:`per_image` is the best one's ``per_image.csv``;
:func:`baseline_in_lava` runs the SLAYER baseline in Lava; :func:`loihi_metrics` assembles the stage's
``metrics.json`` (:class:`LoihiMetrics`, whose keys ``tests/test_contracts.py`` holds to what the report reads).
The machinery they use (netx files, Lava runs, comparisons) is :mod:`kdlib.loihi.deploy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import pandas as pd
from torch import Tensor

from kdlib.core.data import Split
from kdlib.core.io import read_json
from kdlib.core.layout import METRICS_FILE, seed_checkpoint
from kdlib.loihi.deploy import (
    Deployment,
    ImageSpikes,
    LavaRun,
    compare,
    run_lava,
    run_torch,
    selected_seed,
    spike_chunks,
    to_loihi,
)
from kdlib.loihi.fixed_point import LoihiNetwork, NotDeployable, lif_parameters
from kdlib.loihi.slayer import LoihiMLP
from kdlib.measure.energy import ann_energy_nj, loihi_estimate, loihi_run_energies, snn_energy_nj
from kdlib.snn.students import load_student
from kdlib.snn.teachers import count_parameters

if TYPE_CHECKING:
    from kdlib.core.params import LoihiParams
    from kdlib.core.train import FitResult


def deploy_students(students_dir: str | Path, variants: list[str], val: Split, test: Split, *,
                    input_bits: list[int], calibration_images: int) -> tuple[dict[str, Deployment], dict[str, str],
                                                                               dict[str, dict[str, Any]]]:
    """Deploy or refuse each variant of stage 2 (``students_dir``: the dataset's folder of stage 2): the seed that
    model selection on validation picks (:func:`selected_seed`), mapped with :func:`to_loihi`.

    A variant is refused, with the reason, when it was not trained, when the chip has no model of its neurons
    (:func:`kdlib.loihi.fixed_point.lif_parameters`, asked first), when it was trained on another input than the
    graded spikes of the direct encoding, or when no candidate fits. Returns the deployments, the refusals and,
    per deployed variant, its seed and its float test and validation accuracy (``seed``,
    ``float_test_accuracy``, ``float_val_accuracy``), all by variant in the order of ``variants``."""
    deployments: dict[str, Deployment] = {}
    refused: dict[str, str] = {}
    chosen: dict[str, dict[str, Any]] = {}
    for name in variants:
        run_dir = Path(students_dir) / name
        if not (run_dir / METRICS_FILE).is_file():
            refused[name] = f"{name}: not trained (no {run_dir / METRICS_FILE}); run its distillation stage first"
            continue
        seed = selected_seed(read_json(run_dir / METRICS_FILE))
        student, ckpt = load_student(seed_checkpoint(run_dir, seed))
        try:
            lif_parameters(student, name)  # first what the chip cannot run at all, then what it is given
            if ckpt["config"]["encoding"] != "direct":
                raise NotDeployable(f"{name}: trained on {ckpt['config']['encoding']!r} input; the deployment "
                                    "sends the image as graded spikes, the direct encoding")
            deployments[name] = to_loihi(student, val, test, steps=ckpt["config"]["steps"], input_bits=input_bits,
                                         calibration_images=calibration_images, name=name)
        except NotDeployable as err:
            refused[name] = str(err)
            continue
        chosen[name] = {"seed": seed, "float_test_accuracy": ckpt["metrics"]["test_accuracy"],
                        "float_val_accuracy": ckpt["metrics"]["val_accuracy"]}
    return deployments, refused, chosen


# ------------------------------------------------------------------------------------------ the stage's tables
def fixed_point_table(deployments: dict[str, Deployment], chosen: dict[str, dict[str, Any]],
                      labels: np.ndarray) -> pd.DataFrame:
    """Every deployment in the PyTorch fixed-point model on the test set (``labels``) beside its float student, by
    variant: its input resolution, accuracies, the share of images whose class the integers keep, each layer's
    scale and what bound it, the thresholds and the largest current."""
    rows = []
    for name, d in deployments.items():
        fixed_acc = float((d.fixed.predictions() == labels).mean())
        rows.append({
            "variant": name, "seed": chosen[name]["seed"], "input bits": d.net.input_bits, "headroom": d.net.headroom,
            "float test accuracy": chosen[name]["float_test_accuracy"], "fixed-point test accuracy": fixed_acc,
            "difference (points)": 100 * (fixed_acc - chosen[name]["float_test_accuracy"]),
            "same class as float": float((d.fixed.predictions() == d.floating).mean()),
            "fixed-point val accuracy": d.val_accuracy,
            "scales (limit)": ", ".join(f"{layer.scale:,.0f} ({layer.limit})" for layer in d.net.layers),
            "thresholds": ", ".join(str(layer.threshold) for layer in d.net.layers[:-1]),
            "largest current (share of 2^17)": d.fixed.peak_current / 2 ** 17,
        })
    return pd.DataFrame(rows).set_index("variant")


def lava_table(frames: dict[str, pd.DataFrame], lava_runs: dict[str, LavaRun]) -> pd.DataFrame:
    """Every deployment's Lava run (``frames``: :func:`compare_readout` per variant) by variant: the images, Lava's
    accuracy and PyTorch's on the same images, the shares of images on which the two agree, ties, Lava's speed."""
    return pd.DataFrame({
        name: {"test images in Lava": len(f), "Lava accuracy": (f.lava == f.label).mean(),
               "PyTorch fixed point, same images": (f.torch_fixed == f.label).mean(),
               "same class": f.same_prediction.mean(), "same readout voltages": f.same_readout.mean(),
               "same spikes in every layer": f.same_layer_spikes.mean(), "tied readout": f.lava_tie.mean(),
               "Lava steps / s": lava_runs[name].steps_per_second, "Lava wall time (s)": lava_runs[name].seconds}
        for name, f in frames.items()}).T


def energy_table(lava_runs: dict[str, LavaRun], deployments: dict[str, Deployment],
                 frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every deployment's operations per image as counted in its Lava run, and its energy on Loihi under both cost
    tables (:func:`kdlib.measure.energy.loihi_run_energies`) with the latency bound, by variant."""
    rows = {}
    for name, run_ in lava_runs.items():
        counts, net = run_.counts, deployments[name].net
        synops = counts.synops(net)
        table = loihi_run_energies(float(synops.mean()), counts.neuron_updates(net, net.steps),
                                   float(counts.layers.sum(1).mean()))
        first = table.drop_duplicates("hardware").set_index("hardware")
        rows[name] = {
            "test accuracy in Lava": (frames[name].lava == frames[name].label).mean(),
            "input messages": counts.inputs.mean(), "hidden spikes": counts.layers[:, :-1].sum(1).mean(),
            "SynOps": synops.mean(), "Loihi, Davies 2018 (nJ)": first.loc["Loihi (Davies 2018)", "energy_nj"],
            "Loihi, SANA-FE (nJ)": first.loc["Loihi (SANA-FE)", "energy_nj"],
            "latency bound (µs)": first.loc["Loihi (Davies 2018)", "latency_us"],
        }
    return pd.DataFrame(rows).T


DEPLOYED_CSV_COLUMNS = (
    "variant", "seed", "input bits", "headroom", "float test accuracy", "fixed-point test accuracy",
    "difference (points)", "same class as float", "fixed-point val accuracy", "scales (limit)", "thresholds",
    "largest current (share of 2^17)", "test images in Lava", "Lava accuracy", "PyTorch fixed point, same images",
    "same class", "same readout voltages", "same spikes in every layer", "tied readout", "Lava steps / s",
    "Lava wall time (s)", "input messages", "hidden spikes", "SynOps", "Loihi, Davies 2018 (nJ)",
    "Loihi, SANA-FE (nJ)", "latency bound (µs)", "not deployed")
"""The columns of ``deployed.csv`` (:func:`deployed_table`, its index ``variant`` first), in order."""


def deployed_table(fixed: pd.DataFrame, lava: pd.DataFrame, energy: pd.DataFrame,
                   refused: dict[str, str]) -> pd.DataFrame:
    """``deployed.csv`` by variant: :func:`fixed_point_table`, :func:`lava_table` and :func:`energy_table` side by
    side for the deployed students, then one row per refused variant with the reason (``not deployed``)."""
    deployed = fixed.join(lava).join(energy.drop(columns="test accuracy in Lava"))
    return pd.concat([deployed, pd.DataFrame({"not deployed": refused}).rename_axis("variant")])


def per_image(frame: pd.DataFrame, counts: ImageSpikes, net: LoihiNetwork) -> pd.DataFrame:
    """``per_image.csv``: :func:`compare_readout`'s rows of a deployment with each image's synaptic operations
    and its energy on Loihi (Davies et al.'s figures)."""
    synops = counts.synops(net)
    updates = counts.neuron_updates(net, net.steps)
    return frame.assign(synops=synops, loihi_energy_nj=loihi_estimate(synops, updates, counts.layers.sum(1)).total_nj)


# ------------------------------------------------------------------------------------------ the SLAYER baseline
class BaselineMetrics(TypedDict):
    """The SLAYER baseline in the Loihi stage's ``metrics.json`` (key ``baseline``, where it was trained)."""

    variant: str
    steps: int
    hidden: list[int]
    images: int  # test images run in Lava
    parameters: int
    val_accuracy: float
    best_epoch: int
    lava_accuracy: float
    torch_fixed_accuracy: float
    agreement: float  # Lava and PyTorch predict the same class
    spike_count_agreement: float
    layer_spike_agreement: float
    tie_fraction: float
    synops_per_image: float
    loihi_energy_per_image_nj: float
    loihi_latency_per_image_us: float
    lava_seconds: float
    lava_steps_per_second: float
    train_seconds: float


def baseline_in_lava(net: LoihiMLP, path: Path, test: Split, cfg: LoihiParams, trained: FitResult,
                     variant: str) -> BaselineMetrics:
    """Run the trained SLAYER baseline ``net`` (exported to ``path``) in Lava and in PyTorch on the first
    ``cfg.lava_images`` test images, rate-coded the same way for both (:func:`spike_chunks`, ``cfg.seed``), and
    return its entry of the stage's metrics (``trained``: what its training returned; ``variant``: whose
    objective trained it)."""
    sub = Split(test.x[:cfg.lava_images], test.y[:cfg.lava_images])

    def chunks() -> Iterator[Tensor]:
        return spike_chunks(sub, cfg.steps, cfg.chunk_size, seed=cfg.seed)  # the same spikes at every call

    lava = run_lava(path, chunks(), total=-(-len(sub) // cfg.chunk_size))
    fixed = run_torch(net, chunks())
    frame = compare(sub.y, lava.counts, fixed)
    synops = lava.counts.synops(net)
    updates = lava.counts.neuron_updates(net, cfg.steps)
    energy = loihi_estimate(synops.mean(), updates, lava.counts.layers.sum(1).mean())
    return {
        "variant": variant, "steps": cfg.steps, "hidden": cfg.hidden, "images": len(sub),
        "parameters": count_parameters(net), "val_accuracy": trained.best_val_accuracy,
        "best_epoch": trained.best_epoch,
        "lava_accuracy": float((frame.lava == frame.label).mean()),
        "torch_fixed_accuracy": float((frame.torch_fixed == frame.label).mean()),
        "agreement": float(frame.same_prediction.mean()),
        "spike_count_agreement": float(frame.same_output_counts.mean()),
        "layer_spike_agreement": float(frame.same_layer_spikes.mean()),
        "tie_fraction": float(frame.lava_tie.mean()),
        "synops_per_image": round(float(synops.mean()), 1),
        "loihi_energy_per_image_nj": round(energy.total_nj, 3),
        "loihi_latency_per_image_us": round(energy.latency_us, 3),
        "lava_seconds": round(lava.seconds, 2), "lava_steps_per_second": round(lava.steps_per_second, 1),
        "train_seconds": round(trained.train_seconds, 2),
    }


# ------------------------------------------------------------------------------------------ metrics.json
class DeployedMetrics(TypedDict):
    """One deployed student in the Loihi stage's ``metrics.json`` (under ``deployed``, by variant)."""

    seed: int
    input_bits: int
    headroom: float
    float_accuracy: float
    fixed_accuracy: float
    lava_images: int
    lava_accuracy: float
    agreement: float
    readout_agreement: float
    layer_spike_agreement: float
    loihi_energy_per_image_nj: float
    loihi_sana_fe_energy_per_image_nj: float


class EnergyBreakdown(TypedDict):
    """The best student's energy per image on Loihi by kind of operation (nJ)."""

    synops: float
    neurons: float
    spikes: float


class ImporterAgreement(TypedDict):
    """How one NIR importer's replay agrees with the student (:func:`kdlib.loihi.nir_export.importer_agreement`)."""

    images: float
    same_class: float
    same_spike_counts: float
    max_readout_difference: float


class _LoihiMetrics(TypedDict):
    dataset: str
    variant: str  # the best deployment by validation accuracy in fixed point; the top level is about it
    seed: int
    steps: int
    input_bits: int
    headroom: float
    hidden: list[int]
    images: int  # the test images it ran on in Lava (all of them)
    lava_accuracy: float
    torch_fixed_accuracy: float
    float_accuracy: float
    val_accuracy: float
    teacher_test_accuracy: float
    agreement: float  # Lava and PyTorch's integers predict the same class
    readout_agreement: float
    layer_spike_agreement: float
    tie_fraction: float
    spikes_per_image: dict[str, float]  # by layer (layer0, layer1, …; the readout's last)
    input_spikes_per_image: float
    synops_per_image: float
    neuron_updates_per_image: int
    loihi_energy_per_image_nj: float
    loihi_energy_breakdown_nj: EnergyBreakdown
    loihi_latency_per_image_us: float
    energy_45nm_per_image_nj: float
    teacher_energy_45nm_per_image_nj: float
    lava_seconds: float  # every deployment's Lava runs together
    lava_steps: int
    lava_steps_per_second: float
    lava_images: int
    deployed: dict[str, DeployedMetrics]
    refused: dict[str, str]  # variant → why it was not deployed
    nir_roundtrip_differences: int
    nir_replay_max_error: float
    nir: dict[str, dict[str, ImporterAgreement]]  # variant → importer → agreement


class LoihiMetrics(_LoihiMetrics, total=False):
    """The Loihi stage's ``metrics.json`` (one dataset): the best deployment at the top level, every deployment
    under ``deployed``, the refusals, the NIR checks, and the SLAYER baseline where it was trained."""

    baseline: BaselineMetrics


def loihi_metrics(dataset: str, best: str, deployment: Deployment, lava_runs: dict[str, LavaRun],
                  frame: pd.DataFrame, deployed: pd.DataFrame, refused: dict[str, str], *, seed: int,
                  teacher_test_accuracy: float, teacher_macs: int, nir: dict[tuple[str, str], dict[str, float]],
                  nir_differences: int, nir_replay_error: float,
                  baseline: BaselineMetrics | None = None) -> LoihiMetrics:
    """The stage's ``metrics.json``: the best deployment ``best`` (its ``deployment``, its Lava run among
    ``lava_runs`` and :func:`compare_readout`'s ``frame``; ``seed``: its seed) at the top level, every row of
    :func:`deployed_table`'s ``deployed`` that was deployed, the refusals, the teacher's accuracy and 45 nm
    energy (``teacher_macs``), the NIR checks (``nir``: by (variant, importer), as
    :func:`kdlib.loihi.nir_export.importer_agreement` gives them; the round trip's differences and largest replay
    error) and the SLAYER baseline where it ran (:func:`baseline_in_lava`)."""
    net, counts = deployment.net, lava_runs[best].counts
    synops = counts.synops(net)
    updates = counts.neuron_updates(net, net.steps)
    energy = loihi_estimate(synops.mean(), updates, counts.layers.sum(1).mean())
    seconds = sum(r.seconds for r in lava_runs.values())
    steps = sum(r.steps for r in lava_runs.values())
    metrics: LoihiMetrics = {
        "dataset": dataset, "variant": best, "seed": seed, "steps": net.steps,
        "input_bits": net.input_bits, "headroom": net.headroom, "hidden": net.layer_widths()[:-1],
        "images": len(frame),
        "lava_accuracy": float((frame.lava == frame.label).mean()),
        "torch_fixed_accuracy": float((frame.torch_fixed == frame.label).mean()),
        "float_accuracy": float((frame.torch_float == frame.label).mean()), "val_accuracy": deployment.val_accuracy,
        "teacher_test_accuracy": teacher_test_accuracy,
        "agreement": float(frame.same_prediction.mean()), "readout_agreement": float(frame.same_readout.mean()),
        "layer_spike_agreement": float(frame.same_layer_spikes.mean()), "tie_fraction": float(frame.lava_tie.mean()),
        "spikes_per_image": {f"layer{i}": round(float(v), 3) for i, v in enumerate(counts.layers.mean(0))},
        "input_spikes_per_image": round(float(counts.inputs.mean()), 3),
        "synops_per_image": round(float(synops.mean()), 1), "neuron_updates_per_image": updates,
        "loihi_energy_per_image_nj": round(energy.total_nj, 3),
        "loihi_energy_breakdown_nj": {"synops": round(energy.synops_nj, 3), "neurons": round(energy.neurons_nj, 3),
                                      "spikes": round(energy.spikes_nj, 3)},
        "loihi_latency_per_image_us": round(energy.latency_us, 3),
        "energy_45nm_per_image_nj": round(snn_energy_nj(float(synops.mean())), 3),
        "teacher_energy_45nm_per_image_nj": round(ann_energy_nj(teacher_macs), 3),
        "lava_seconds": round(seconds, 2), "lava_steps": int(steps),
        "lava_steps_per_second": round(steps / seconds, 1),
        "lava_images": int(deployed["test images in Lava"].sum()),
        "deployed": {name: {"seed": int(row["seed"]), "input_bits": int(row["input bits"]),
                            "headroom": row["headroom"], "float_accuracy": float(row["float test accuracy"]),
                            "fixed_accuracy": float(row["fixed-point test accuracy"]),
                            "lava_images": int(row["test images in Lava"]),
                            "lava_accuracy": float(row["Lava accuracy"]), "agreement": float(row["same class"]),
                            "readout_agreement": float(row["same readout voltages"]),
                            "layer_spike_agreement": float(row["same spikes in every layer"]),
                            "loihi_energy_per_image_nj": round(float(row["Loihi, Davies 2018 (nJ)"]), 3),
                            "loihi_sana_fe_energy_per_image_nj": round(float(row["Loihi, SANA-FE (nJ)"]), 3)}
                     for name, row in deployed.dropna(subset=["seed"]).iterrows()},
        "refused": refused,
        "nir_roundtrip_differences": nir_differences, "nir_replay_max_error": nir_replay_error,
        "nir": {},
    }
    for (name, importer), row in nir.items():
        metrics["nir"].setdefault(name, {})[importer] = {k: float(v) for k, v in row.items()}  # type: ignore[assignment]
    if baseline:
        metrics["baseline"] = baseline
    return metrics
