"""The study's tables, assembled and formatted once, for the report notebook and for the generated pages.

Each function takes the frames that :mod:`kdlib.report.summary` loads from ``results/`` (or that the report
computes from them) and returns a frame or a dict; nothing here reads files or draws.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from kdlib.core import params as P
from kdlib.measure import energy as E
from kdlib.report import studies


# ------------------------------------------------------------------------------------------------ tuning
def tuning(tuned: pd.DataFrame, tried: pd.DataFrame, params: P.Params) -> pd.DataFrame:
    """Every study (``studies.best``) with its budget, its best validation accuracy, the values it chose beside the
    hand-set ones, and the minutes its trials took (``studies.trials``), indexed by dataset and variant."""

    def hand(row: pd.Series) -> str:
        spec = params.variants[row.variant]
        student_lr = P.student_for(params.student, params.variants, row.variant, row.dataset).lr
        return studies.values_text(studies.hand_set(spec, student_lr, list(row["values"])))

    return pd.DataFrame({
        "dataset": tuned.dataset, "variant": tuned.variant, "trials": tuned.trials, "pruned": tuned.pruned,
        "best val accuracy": tuned.val_accuracy, "tuned values": tuned["values"].map(studies.values_text),
        "hand-set values": tuned.apply(hand, axis=1),
        "trial minutes": [tried[(tried.dataset == d) & (tried.variant == v)].seconds.sum() / 60
                          for d, v in zip(tuned.dataset, tuned.variant, strict=True)],
    }).set_index(["dataset", "variant"])


# ------------------------------------------------------------------------------------------------ energy
def with_deployed(conventions: pd.DataFrame, chips: pd.DataFrame) -> pd.DataFrame:
    """Stage 3's energy of every model under every convention, with each deployed Loihi student of stage 4 as
    it ran in Lava (its measured operation counts at its own T) appended."""
    rows = [E.loihi_run_energies(chip.synops_per_image, chip.neuron_updates_per_image,
                                 sum(v for k, v in chip.items() if k.startswith("spikes_per_image.")))
            .assign(dataset=chip.dataset, model=deployed_name(chip), seed=0, accuracy=chip.lava_accuracy)
            for _, chip in chips.iterrows()]
    return pd.concat([conventions, *rows], ignore_index=True) if rows else conventions


def deployed_name(chip: pd.Series) -> str:
    """How the report names the Loihi stage's best student (a row of its ``metrics.json``)."""
    return f"{chip.variant} on Loihi (Lava, T = {chip.steps})"


def flips(conventions: pd.DataFrame, means: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per dataset of ``order``, :func:`kdlib.measure.energy.verdicts` for its most accurate student (by the mean
    over seeds of ``means``, :func:`kdlib.report.findings.seed_means`)."""
    present = set(conventions.get("dataset", []))
    return pd.concat([E.verdicts(conventions[conventions.dataset == dataset],
                                 means.xs(dataset, level="dataset").accuracy.idxmax()).assign(dataset=dataset)
                      for dataset in order if dataset in present] or [pd.DataFrame()])


# ------------------------------------------------------------------------------------------------ students
def students_shown(table: pd.DataFrame, chips: pd.DataFrame) -> pd.DataFrame:
    """:func:`kdlib.report.summary.student_table` as text (mean ± standard deviation over seeds), with the best
    student of each dataset as deployed on Loihi after the students of its dataset."""
    acc, acc_sd = table["test_accuracy"], table["test_accuracy_std"]
    spk, spk_sd = table["spikes_per_image.total"], table["spikes_per_image.total_std"]
    shown = pd.DataFrame({
        "test accuracy (%)": [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(acc, acc_sd, strict=True)],
        "spikes / image": [f"{m:,.0f} ± {s:,.0f}" for m, s in zip(spk, spk_sd, strict=True)],
        "SynOps / image": [f"{m:,.0f}" for m in table["synops_per_image"]],
        "seeds": table["seeds"].astype(int).astype(str),
    }, index=table.index)
    shown["Lava = PyTorch (%)"] = "–"
    loihi_rows = {
        (chip.dataset, deployed_name(chip)): {
            "test accuracy (%)": f"{100 * chip.lava_accuracy:.2f}",
            "spikes / image": f"{sum(chip[f'spikes_per_image.layer{i}'] for i in range(len(chip.hidden))):,.0f}",
            "SynOps / image": f"{chip.synops_per_image:,.0f}", "seeds": "1",
            "Lava = PyTorch (%)": f"{100 * chip.agreement:.2f}",
        } for _, chip in chips.iterrows()}
    if loihi_rows:
        shown = pd.concat([shown, pd.DataFrame.from_dict(loihi_rows, orient="index").rename_axis(shown.index.names)])
    return shown


# ------------------------------------------------------------------------------------------------ comparisons
MEASURES = {"accuracy": "test accuracy (points)", "spikes": "spikes per image"}


def interval_text(row: pd.Series) -> str:
    """A comparison's difference and 95 % interval: in points for accuracy, in spikes for spikes."""
    scale, fmt = (100, "+.2f") if row.measure == "accuracy" else (1, "+,.0f")
    return f"{scale * row.difference:{fmt}} [{scale * row.low:{fmt}}, {scale * row.high:{fmt}}]"


def comparisons_wide(comparisons: pd.DataFrame) -> pd.DataFrame:
    """:func:`kdlib.measure.stats.compare_variants`' rows side by side: one row per (dataset, baseline, variant),
    for each measure its difference with interval, Holm-corrected p and verdict."""
    shown = comparisons.assign(interval=[interval_text(r) for _, r in comparisons.iterrows()],
                               holm=comparisons.p_holm.map("{:.2g}".format))
    wide = shown.pivot_table(index=["dataset", "baseline", "variant"], columns="measure",
                             values=["interval", "holm", "verdict"], aggfunc="first", sort=False)
    kinds = {"interval": "difference [95 % CI]", "holm": "p (Holm)", "verdict": "verdict"}
    wide = wide.reorder_levels([1, 0], axis=1)[[(m, k) for m in MEASURES for k in kinds]]
    wide.columns = pd.MultiIndex.from_tuples([(MEASURES[m], kinds[k]) for m, k in wide.columns])
    return wide


# ------------------------------------------------------------------------------------------------ Loihi
DEPLOYED_COLUMNS = {
    "seed": "seed", "input bits": "input bits", "float test accuracy": "float (stage 2)",
    "fixed-point test accuracy": "integers, PyTorch", "Lava accuracy": "Lava", "test images in Lava": "images in Lava",
    "same class": "Lava = PyTorch: class", "same spikes in every layer": "Lava = PyTorch: spikes",
    "Loihi, Davies 2018 (nJ)": "Loihi, Davies 2018 (nJ)", "Loihi, SANA-FE (nJ)": "Loihi, SANA-FE (nJ)",
    "not deployed": "not deployed"}
BEST_DEPLOYED_COLUMNS = {
    "variant": "best student", "steps": "time steps", "input_bits": "input bits", "lava_accuracy": "accuracy, Lava",
    "torch_fixed_accuracy": "accuracy, PyTorch integers", "float_accuracy": "accuracy, float (stage 2)",
    "agreement": "Lava = PyTorch: class", "readout_agreement": "Lava = PyTorch: readout voltages",
    "layer_spike_agreement": "Lava = PyTorch: spikes per layer", "synops_per_image": "SynOps / image",
    "loihi_energy_per_image_nj": "energy on Loihi, Davies 2018 (nJ)",
    "loihi_latency_per_image_us": "latency bound on Loihi (µs)",
    "teacher_energy_45nm_per_image_nj": "ANN teacher at 45 nm (nJ)",
    "images": "test images", "lava_images": "images in Lava, all students",
    "lava_steps_per_second": "Lava steps / s", "lava_seconds": "Lava wall time (s)",
}


def deployed(part: pd.DataFrame) -> pd.DataFrame:
    """One dataset's ``deployed.csv`` (every student of stage 2 on Loihi, or why not), by variant, renamed."""
    return part.set_index("variant")[[c for c in DEPLOYED_COLUMNS if c in part]].rename(columns=DEPLOYED_COLUMNS)


def best_deployed(chips: pd.DataFrame) -> pd.DataFrame:
    """The Loihi stage's best student of each dataset (its ``metrics.json``), one column per dataset."""
    return chips.set_index("dataset")[[c for c in BEST_DEPLOYED_COLUMNS if c in chips]].rename(
        columns=BEST_DEPLOYED_COLUMNS).T


def baselines(chips: pd.DataFrame) -> pd.DataFrame:
    """The SLAYER baseline of each dataset where it was trained (``baseline.*`` of the Loihi metrics)."""
    found = chips.set_index("dataset").filter(like="baseline.").dropna(how="all")
    return found.rename(columns=lambda c: c.removeprefix("baseline.")).T


# ------------------------------------------------------------------------------------------------ headline
def headline(table: pd.DataFrame, teachers: pd.DataFrame, comparisons: pd.DataFrame, matched: pd.DataFrame,
             chips: pd.DataFrame, datasets: list[str]) -> dict[str, dict[str, Any]]:
    """The report's ``headline.json``: per dataset, the teacher, the best student, scratch, hetero_kd's spike
    saving over kd, every paired comparison, the front's savings and the deployed student."""

    def mean(dataset: str, variant: str, column: str) -> float:
        return float(table.loc[(dataset, variant), column]) if (dataset, variant) in table.index else float("nan")

    out: dict[str, dict[str, Any]] = {}
    for dataset in datasets:
        best = table.loc[dataset]["test_accuracy"].idxmax()
        entry: dict[str, Any] = {
            "teacher_test_accuracy": float(teachers.set_index("dataset").test_accuracy[dataset]),
            "best_variant": best,
            "best_test_accuracy": mean(dataset, best, "test_accuracy"),
            "scratch_test_accuracy": mean(dataset, "scratch", "test_accuracy"),
            "hetero_vs_kd_spike_reduction": 1 - mean(dataset, "hetero_kd", "spikes_per_image.total")
            / mean(dataset, "kd", "spikes_per_image.total"),
        }
        entry["comparisons"] = {
            f"{r.variant}_vs_{r.baseline}_{r.measure}": {"difference": float(r.difference), "low": float(r.low),
                                                          "high": float(r.high), "p_holm": float(r.p_holm),
                                                          "verdict": r.verdict, "seeds": int(r.seeds)}
            for r in comparisons[comparisons.dataset == dataset].itertuples()}
        row = matched[matched.dataset == dataset] if not matched.empty else matched
        if len(row):
            f = row.iloc[0]
            entry["front_matched_saving"] = None if pd.isna(f.get("saving")) else float(f.saving)
            entry["front_largest_saving"] = float(f["largest_saving.saving"])
        for _, chip in chips[chips.dataset == dataset].iterrows():
            entry |= {"loihi_variant": chip.variant, "loihi_lava_accuracy": float(chip.lava_accuracy),
                      "loihi_agreement": float(chip.agreement),
                      "loihi_energy_per_image_nj": float(chip.loihi_energy_per_image_nj)}
        out[dataset] = entry
    return out
