"""The spike analysis of one dataset (stage ``spikes``, ``notebooks/03_spikes.ipynb``), assembled: the students it
reads, the tables it writes and the figures of its ``metrics.json``.

The measurements themselves live in :mod:`kdlib.measure.analysis`, :mod:`kdlib.measure.energy` and
:mod:`kdlib.snn.conversion`; this module strings them together over every student of a dataset, in the order the
notebook tells them, and keeps what a later section needs on each :class:`StudentRun` (its outputs at every step
for early exit, its counts for the energy conventions).

:class:`SpikesMetrics` is the stage's ``metrics.json``: :func:`spikes_metrics` makes it, and what the report reads
of it (:mod:`kdlib.report.findings`) is held to its keys by ``tests/test_contracts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import pandas as pd
import torch
from torch import Tensor, nn

from kdlib.core.data import Split, encode
from kdlib.core.layout import seed_checkpoints
from kdlib.core.params import SpikesParams
from kdlib.core.train import accuracy, predict
from kdlib.measure import analysis as A
from kdlib.measure import energy as E
from kdlib.measure.spikes import SpikeCounter, linear_macs
from kdlib.snn.conversion import convert_mlp
from kdlib.snn.students import load_student


# ------------------------------------------------------------------------------------------------ the students
@dataclass
class StudentRun:
    """One trained student of stage 2 as the analysis goes through it: what it is, and what each section has
    measured so far (``accuracy``, ``counts`` and ``outputs`` at its own T, from :func:`spike_costs`)."""

    variant: str
    seed: int
    model: nn.Module
    steps: int
    encoding: str
    accuracy: float | None = None  # test accuracy at its own T
    counts: SpikeCounter | None = None  # its spikes and operations over the test set
    outputs: Tensor | None = None  # (T, N, classes): its outputs at every step, for early exit


def load_students(students_dir: str | Path) -> list[StudentRun]:
    """Every student checkpoint that stage 2 wrote under a dataset's folder, by variant and seed; a
    :class:`FileNotFoundError` where there is none."""
    students = []
    for variant, seed, path in seed_checkpoints(students_dir):
        model, ckpt = load_student(path)
        students.append(StudentRun(variant, seed, model, ckpt["config"]["steps"], ckpt["config"]["encoding"]))
    if not students:
        raise FileNotFoundError(f"no student checkpoints under {students_dir}: run the distillation stage first")
    return students


def first_seeds(students: list[StudentRun]) -> dict[str, StudentRun]:
    """The student of each variant's first seed, variants in the reverse of their order among ``students`` (the
    order of the rows of ``counter_check.csv`` and ``noise.csv``)."""
    return {s.variant: s for s in reversed(students)}


def ann_accuracy(model: nn.Module, split: Split) -> float:
    """Test accuracy of an ANN (the teacher, or its INT8 version) on ``split``."""
    return accuracy(predict(lambda x: model(x).logits, split), split.y)


# ------------------------------------------------------------------------------------------------ accuracy
def accuracy_curves(students: list[StudentRun], teacher: nn.Module, calibration: Tensor, test: Split,
                    cfg: SpikesParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy against T of every student (1 to ``cfg.max_steps``, model = its variant) and of the teacher's
    ANN→SNN conversion (calibrated on ``calibration``, at ``cfg.conversion_steps``, model ``conversion``, seed 0):
    the whole table (``accuracy_vs_steps.csv``) and the conversion's part."""
    curves = []
    for s in students:
        frame = A.accuracy_over_time(s.model, test, range(1, cfg.max_steps + 1), encoding=s.encoding)
        curves.append(frame.assign(model=s.variant, seed=s.seed))
    converted = convert_mlp(teacher, calibration, percentile=cfg.percentile)
    conversion = A.accuracy_over_time(converted, test, cfg.conversion_steps, chunk_size=100).assign(
        model="conversion", seed=0)
    return pd.concat([*curves, conversion], ignore_index=True), conversion


# ------------------------------------------------------------------------------------------------ spikes and energy
def spike_costs(students: list[StudentRun], test: Split, curves: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every student run once over ``test`` at its own T: one row per student (variant, seed, steps, its accuracy
    there from ``curves``, and :meth:`kdlib.measure.spikes.SpikeCounter.summary`'s counts and energies), and the
    firing rate of every neuron of each variant's first seed (column ``variant``). Keeps each student's
    accuracy, counts and outputs on it."""
    rows, rates = [], []
    for s in students:
        ev = A.evaluate(s.model, test, s.steps, encoding=s.encoding, keep_outputs=True)
        s.outputs, s.counts = ev.outputs, ev.counts
        at_own_t = curves[(curves.model == s.variant) & (curves.seed == s.seed) & (curves.steps == s.steps)]
        s.accuracy = at_own_t.accuracy.item()
        rows.append({"variant": s.variant, "seed": s.seed, "steps": s.steps, "accuracy": s.accuracy,
                     **E.counter_summary(s.counts)})
        if s.seed == min(t.seed for t in students if t.variant == s.variant):
            rates.append(s.counts.firing_rates().assign(variant=s.variant))
    return pd.DataFrame(rows), pd.concat(rates)


def teacher_costs(teacher: nn.Module, teacher_accuracy: float) -> dict[str, float | int | str]:
    """The ANN teacher as a row of :func:`spike_costs`' table: its MACs and their 45 nm energy (no Loihi figure)."""
    macs = linear_macs(teacher)
    return {"variant": "ANN teacher", "seed": 0, "steps": 1, "accuracy": teacher_accuracy, "synops": 0.0,
            "input_macs": float(macs), "energy_45nm_nj": E.ann_energy_nj(macs), "energy_loihi_nj": float("nan")}


ENERGY_COLUMNS = ("energy_45nm_nj", "energy_loihi_nj")  # the two estimates of energy.csv, each with its front


def pareto_fronts(energy: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """For each estimate of :data:`ENERGY_COLUMNS`, the rows of ``energy`` that no other beats on both energy and
    accuracy (:func:`kdlib.measure.analysis.pareto_front`), by increasing energy."""
    fronts = {}
    for column in ENERGY_COLUMNS:
        part = energy.dropna(subset=[column])
        fronts[column] = part[A.pareto_front(part, column, "accuracy")].sort_values(column)
    return fronts


def energy_conventions(students: list[StudentRun], teacher_ops: E.AnnCounts, inputs: E.InputStatistics,
                       teacher_accuracy: float, teacher_int8_accuracy: float, dataset: str) -> pd.DataFrame:
    """``energy_conventions.csv``: the ANN teacher in FP32 and in INT8, then every student (each seed, after
    :func:`spike_costs`), under every cost table and convention of :mod:`kdlib.measure.energy`."""
    parts = [E.ann_energies(teacher_ops, "FP32").assign(model="ANN teacher (FP32)", seed=0, accuracy=teacher_accuracy),
             E.ann_energies(teacher_ops, "INT8").assign(model="ANN teacher (INT8)", seed=0,
                                                        accuracy=teacher_int8_accuracy)]
    for s in students:
        counts = E.SpikingCounts.measured(s.model, s.counts, s.encoding, inputs)
        parts.append(E.snn_energies(counts).assign(model=s.variant, seed=s.seed, accuracy=s.accuracy))
    return pd.concat(parts, ignore_index=True).assign(dataset=dataset)


def counter_check(students: dict[str, StudentRun], x: Tensor) -> pd.DataFrame:
    """``counter_check.csv``: kdlib's and SpikingJelly's counts of each student of ``students`` (one per variant)
    on images ``x`` (:func:`kdlib.measure.energy.crosscheck_counts`), and their relative differences."""
    checks = []
    for variant, s in students.items():
        checks.append({"variant": variant, **E.crosscheck_counts(
            s.model, encode(x, s.steps, s.encoding, torch.Generator().manual_seed(0)), s.encoding)})
    checks = pd.DataFrame(checks).set_index("variant")
    checks["synops_difference"] = (checks.synops / checks.synops_spikingjelly - 1).abs()
    checks["macs_difference"] = (checks.macs / checks.macs_spikingjelly.where(checks.macs_spikingjelly > 0) - 1).abs()
    return checks


# ------------------------------------------------------------------------------------------------ latency, robustness
def early_exits(students: list[StudentRun], labels: Tensor, thresholds: list[float]) -> pd.DataFrame:
    """``early_exit.csv``: every student's SEENN-I sweep (:func:`kdlib.measure.analysis.early_exit_sweep`) over the
    outputs :func:`spike_costs` kept, with its variant, seed and full T."""
    exits = []
    for s in students:
        sweep = A.early_exit_sweep(s.outputs, labels, thresholds)
        exits.append(sweep.assign(variant=s.variant, seed=s.seed, full_steps=s.steps))
    return pd.concat(exits, ignore_index=True)


def noise_robustness(teacher: nn.Module, students: dict[str, StudentRun], test: Split, seed: int) -> pd.DataFrame:
    """``noise.csv``: the teacher and each student of ``students`` (one per variant) on the same corrupted test
    images, every corruption and level of :data:`kdlib.measure.analysis.CORRUPTIONS` (seeded with ``seed``)."""
    noise = []
    for name, corruption in A.CORRUPTIONS.items():
        for level in corruption.levels:
            split = A.corrupt_split(test, name, level, seed=seed)
            noise.append({"corruption": corruption.label, "level": level, "model": "ANN teacher",
                          "accuracy": ann_accuracy(teacher, split)})
            for variant, s in students.items():
                acc = A.evaluate(s.model, split, s.steps, encoding=s.encoding).accuracy
                noise.append({"corruption": corruption.label, "level": level, "model": variant, "accuracy": acc})
    return pd.DataFrame(noise)


# ------------------------------------------------------------------------------------------------ metrics.json
SpikesMetrics = TypedDict("SpikesMetrics", {
    "dataset": str,
    "best_variant": str,  # the variant of the best mean test accuracy over seeds
    "best_accuracy": float,
    "best_steps": int,
    "conversion_steps_to_match_best": int | None,  # the fewest steps at which the conversion reaches it; None: never
    "conversion_latency_ratio": float | None,  # those steps over the best variant's
    "conversion_accuracy_at_max_steps": float,
    "early_exit_mean_steps_within_0.1_points": float,  # NaN where no threshold stays within 0.1 points
    "best_energy_45nm_nj": float,
    "best_energy_loihi_nj": float,
    "teacher_energy_45nm_nj": float,
    "teacher_int8_accuracy": float,
    "counter_check_max_difference": float,  # kdlib's counts against SpikingJelly's, the largest relative difference
    "hetero_vs_kd_spike_reduction": float | None,  # 1 − hetero_kd's spikes / kd's (means over seeds); None: not both
})
"""The spike analysis's ``metrics.json`` (one dataset)."""


def spikes_metrics(dataset: str, costs: pd.DataFrame, curves: pd.DataFrame, conversion: pd.DataFrame,
                   exits: pd.DataFrame, teacher_row: dict, teacher_int8_accuracy: float,
                   counter_difference: float) -> SpikesMetrics:
    """The stage's ``metrics.json`` from its tables: :func:`spike_costs`' ``costs``, :func:`accuracy_curves`'
    ``curves`` and ``conversion``, :func:`early_exits`' ``exits``, :func:`teacher_costs`' row, the INT8 teacher's
    accuracy and the largest difference of :func:`counter_check`."""
    mean_by = costs.groupby("variant").mean(numeric_only=True)
    best = mean_by["accuracy"].idxmax()
    best_acc, best_steps = mean_by.loc[best, "accuracy"], int(mean_by.loc[best, "steps"])
    reached = conversion[conversion.accuracy >= best_acc]
    conv_steps = int(reached.steps.min()) if len(reached) else None
    best_exit = exits[(exits.variant == best)].groupby("threshold").mean(numeric_only=True)
    full_acc = curves[(curves.model == best) & (curves.steps == best_steps)].accuracy.mean()
    within = best_exit[best_exit.accuracy >= full_acc - 0.001]
    exit_steps = float(within.mean_steps.min()) if len(within) else float("nan")
    hetero = mean_by.loc["hetero_kd"] if "hetero_kd" in mean_by.index else None
    kd = mean_by.loc["kd"] if "kd" in mean_by.index else None
    return {
        "dataset": dataset, "best_variant": best, "best_accuracy": float(best_acc), "best_steps": best_steps,
        "conversion_steps_to_match_best": conv_steps,
        "conversion_latency_ratio": None if conv_steps is None else conv_steps / best_steps,
        "conversion_accuracy_at_max_steps": float(conversion.accuracy.iloc[-1]),
        "early_exit_mean_steps_within_0.1_points": exit_steps,
        "best_energy_45nm_nj": float(mean_by.loc[best, "energy_45nm_nj"]),
        "best_energy_loihi_nj": float(mean_by.loc[best, "energy_loihi_nj"]),
        "teacher_energy_45nm_nj": float(teacher_row["energy_45nm_nj"]),
        "teacher_int8_accuracy": teacher_int8_accuracy,
        "counter_check_max_difference": counter_difference,
        "hetero_vs_kd_spike_reduction": (None if hetero is None or kd is None
                                         else float(1 - hetero.spikes_total / kd.spikes_total)),
    }
