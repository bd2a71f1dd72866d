"""What the study found: the comparison with the papers' claims, and the report's abstract, findings and
limitations in words, all computed from the stages' metrics.

The spike analysis (``03_spikes``, one dataset) and the study report (``05_report``, every dataset) build
their "beside the papers" table with :func:`claims`, so the two say the same thing in the same words;
its intervals and the report's comparisons between methods come from :mod:`kdlib.measure.stats`. The inputs are
plain tables of metrics:

``runs``
    one row per trained student: ``dataset``, ``variant``, ``seed``, ``accuracy``, ``spikes``;
``students``
    one row per (dataset, variant), the mean over seeds: ``accuracy``, ``accuracy_std``, ``spikes``
    (per test image, all hidden layers and steps), ``seeds`` (:func:`seed_means` makes it from one row per
    trained student);
``spikes``
    one row per dataset of the spike analysis's ``metrics.json`` (index ``dataset``);
``chips``
    one row per dataset of the Loihi stage's ``metrics.json`` (may be empty);
``flips``
    one row per (dataset, hardware, convention): the most accurate student's energy per image against the
    ANN teacher's, as :func:`kdlib.measure.energy.verdicts` writes it with a ``dataset`` column (may be empty).

The papers' figures quoted here, with their titles, are :data:`PAPERS`; ``docs/claims.md`` lists them from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kdlib.measure.stats import holm, mean_interval, paired_difference


def seed_means(runs: pd.DataFrame) -> pd.DataFrame:
    """The ``students`` table of this module from one row per trained student: ``dataset``, ``variant``,
    ``accuracy`` and ``spikes``."""
    columns = ["accuracy", "spikes"]
    grouped = runs.groupby(["dataset", "variant"], sort=False)
    means = grouped[columns].mean()
    means["accuracy_std"] = grouped["accuracy"].std(ddof=1)
    means["seeds"] = grouped.size()
    return means


def _fewer(fraction: float, digits: int = 0) -> str:
    return f"{100 * fraction:.{digits}f} % fewer" if fraction >= 0 else f"{-100 * fraction:.{digits}f} % more"


def _spikes_text(saving: tuple[float, float, float], digits: int = 0) -> str:
    """``(saving, low, high)`` of :func:`_spike_saving` in words, the interval in the same direction as the mean:
    ``37 % fewer spikes (95 % CI 32 to 43 % fewer)`` or ``67 % more spikes (95 % CI 59 to 74 % more)``."""
    mean, low, high = saving
    if mean >= 0:
        return f"{_fewer(mean, digits)} spikes ({_ci(low, high, unit=' % fewer')})"
    return f"{_fewer(mean, digits)} spikes ({_ci(-high, -low, unit=' % more')})"


def _spike_saving(variant: pd.Series, baseline: pd.Series) -> tuple[float, float, float]:
    """The fraction of the baseline's spikes that the variant saves, paired by seed: the mean over seeds of
    1 − variant / baseline and its 95 % t interval (none with one seed). Returns (saving, low, high). The
    report's sentences quote the ratio of the seed means instead, and say so."""
    return _interval(1 - variant / baseline)


def _on_papers_dataset(dataset: str, verdict: str, why: str) -> tuple[str, str]:
    """A claim made on MNIST, measured on another dataset, is not tested by it (``docs/claims.md``)."""
    if dataset.startswith("mnist"):
        return verdict, why
    return "inconclusive", f"the paper's figure is on MNIST, this is {dataset} (would read: {verdict}); {why}"


def _points(x: float) -> str:
    return f"{100 * x:+.2f} points"


# The keys of the stages' metrics.json that this module reads, and only those: the spike analysis's
# (kdlib.measure.study.SpikesMetrics) and the Loihi stage's (kdlib.loihi.study.LoihiMetrics, as
# kdlib.report.summary.load_metrics flattens it); tests/test_contracts.py holds them to those contracts.
SPIKES_KEYS = ("best_variant", "best_accuracy", "best_steps", "conversion_steps_to_match_best",
               "conversion_latency_ratio", "early_exit_mean_steps_within_0.1_points", "best_energy_45nm_nj",
               "best_energy_loihi_nj", "teacher_energy_45nm_nj")
CHIPS_KEYS = ("dataset", "variant", "steps", "hidden", "images", "lava_accuracy", "float_accuracy", "agreement",
              "loihi_energy_per_image_nj", "teacher_energy_45nm_per_image_nj")


def _read(table: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """``table`` (a stage's metrics, one row per dataset) with only the columns ``keys``, so that a key missing
    from the metrics fails here by name, and a key read but not declared fails where it is read (an empty table,
    a stage that has not run, stays as it is)."""
    return table if table.empty else table[list(keys)]


# ------------------------------------------------------------------------------------------------ the claims
VERDICTS = ("reproduced", "refuted", "inconclusive")


@dataclass(frozen=True)
class Paper:
    """A published figure the study is set beside: its source, the claim as the claims table words it, and how the
    workbook compares (``claim`` None: quoted for context in ``docs/claims.md``, no row, no verdict)."""

    source: str  # authors, title and venue
    reports: str  # what the paper reports
    claim: str | None  # the claim column of the claims table
    compared: str  # how the workbook compares


PAPERS: dict[str, Paper] = {
    "yin": Paper(
        'Yin et al., "Algorithm and Hardware Design of Discrete-Time Spiking Neural Networks Based on Back Propagation '
        'with Binary Activations" (2017)', "above 98 % on MNIST with binary activations",
        "Yin et al. 2017, binary-activation discrete-time SNN: above 98 % on MNIST",
        "the test accuracy of the better of the two `ste_*` students on MNIST"),
    "yin_energy": Paper(
        "Yin et al. (2017), as above", "48.4–773 nJ per image on the authors' 40 nm chip",
        "Yin et al. 2017: 48.4–773 nJ per image on the authors' 40 nm chip",
        "the most accurate student's energy under the 45 nm and Loihi models, and the teacher's (estimates of "
        "another network: always inconclusive)"),
    "lee": Paper(
        'Lee et al., "Energy-efficient knowledge distillation for spiking neural networks" (2021)',
        "on MNIST, up to 0.09 points more accuracy and 65 % fewer spikes than conventional KD",
        "Lee et al. 2021, heterogeneous-temperature KD: 65 % fewer spikes than KD at +0.09 points (MNIST)",
        "`hetero_kd` against `kd`, paired by seed: the relative change in spikes per image and the accuracy "
        "difference"),
    "lee_front": Paper(
        "Lee et al. (2021), as above", "as above",
        "Lee et al. 2021 at matched accuracy: some pair of temperatures gives 65 % fewer spikes than KD",
        "stage `front`: KD over a grid of (τ_T, τ_S) on the validation split, the fewest spikes within "
        "`front.match` of plain KD's most accurate point"),
    "fang": Paper(
        'Fang et al., "Incorporating Learnable Membrane Time Constant to Enhance Learning of Spiking Neural '
        'Networks" (PLIF, ICCV 2021)', "a convolutional SNN at T = 8: 99.72 % on MNIST, 94.38 % on Fashion-MNIST",
        "Fang et al. 2021, convolutional PLIF SNN (T = 8): MNIST 99.72 %, Fashion-MNIST 94.38 %",
        "the most accurate student of each dataset (fully connected, T = 4: always inconclusive)"),
    "lasnn": Paper(
        'Hong et al., "LaSNN: Layer-wise ANN-to-SNN Distillation for Effective and Efficient Training in Deep Spiking '
        'Neural Networks" (2023)', "competitive accuracy with about 20× faster inference than converted SNNs "
        "(CIFAR-10/100, Tiny ImageNet)",
        "LaSNN 2023: a distilled SNN infers about 20× faster than a converted one at equal accuracy",
        "the steps the teacher's conversion needs to match the most accurate student (any variant) at its T"),
    "seenn": Paper(
        'Li et al., "SEENN: Towards Temporal Spiking Early-Exit Neural Networks" (NeurIPS 2023)',
        "SEENN-II: 96.1 % on CIFAR-10 at 1.08 average time steps",
        "SEENN 2023: 96.1 % on CIFAR-10 at 1.08 average time steps",
        "SEENN-I's confidence threshold on the most accurate student: the fewest average steps within 0.1 points "
        "of its full-T accuracy (another method and dataset: always inconclusive)"),
    "davies": Paper(
        'Davies et al., "Advancing Neuromorphic Computing With Loihi: A Survey of Results and Outlook" '
        "(Proc. IEEE 2021)", "plain feed-forward networks gain little, if anything, on Loihi",
        "Davies et al. 2021: plain feed-forward networks gain little, if anything, on Loihi",
        "the most accurate student on Loihi against the INT8 teacher at 45 nm under every Loihi estimate"),
    "renner": Paper(
        'Renner et al., "The backpropagation algorithm implemented on spiking neuromorphic hardware" (Nature '
        "Communications 2024), measured on Loihi", "a 400-400-10 network: 96.3 % on MNIST, about 2.5 µJ and "
        "0.17 ms per image",
        "Renner et al. 2024, measured on Loihi: 400-400-10 at 96.3 % on MNIST, about 2.5 µJ per image",
        "the Loihi stage's deployed MNIST student (another network; estimates, not a measurement: always "
        "inconclusive)"),
    "kdsnn": Paper(
        'Xu et al., "Constructing Deep Spiking Neural Networks from Artificial Neural Networks with Knowledge '
        'Distillation" (KDSNN, CVPR 2023)', "response and feature distillation together; robustness to noise",
        None, "context only: `joint_kd` is this method; it is compared with scratch and kd like every variant"),
    "tssl": Paper(
        'Zhang and Li, "Temporal Spike Sequence Learning via Backpropagation for Deep Spiking Neural Networks" '
        "(TSSL-BP, NeurIPS 2020)", "89.80 % on Fashion-MNIST with 784-400-400-10 at T = 5", None,
        "context only: the Fashion-MNIST students have the same widths at T = 4"),
    "lava_tutorial": Paper(
        "lava-dl's MNIST tutorial", "99.28 % on MNIST with a 784-512-512-10 CUBA network at T = 16", None,
        "context only: the Loihi stage's SLAYER baseline is a smaller network trained for fewer epochs"),
}


def sources_markdown() -> str:
    """``docs/claims.md``'s table of sources, from :data:`PAPERS`."""
    lines = ["| source | what it reports | the claims table's row | how the workbook compares |", "|---|---|---|---|"]
    lines += [f"| {p.source} | {p.reports} | {p.claim or '– (no row)'} | {p.compared} |" for p in PAPERS.values()]
    return "\n".join(lines) + "\n"


def _against(low: float, high: float, threshold: float) -> str:
    """Where an interval lies against a claimed value that should be reached: above it (``reproduced``),
    below it (``refuted``) or across it (``inconclusive``)."""
    if math.isnan(low + high):
        return "inconclusive"
    return "reproduced" if low >= threshold else "refuted" if high < threshold else "inconclusive"


def _combine(*verdicts: str) -> str:
    return "refuted" if "refuted" in verdicts else "reproduced" if set(verdicts) == {"reproduced"} else "inconclusive"


def _paired(runs: pd.DataFrame, dataset: str, a: str, b: str, column: str) -> pd.DataFrame:
    """The two variants' values of ``column``, one row per seed that both have (columns ``a``, ``b``)."""
    part = runs[(runs.dataset == dataset) & runs.variant.isin([a, b])]
    return part.pivot_table(index="seed", columns="variant", values=column, aggfunc="first").reindex(
        columns=[a, b]).dropna()


def _interval(values: pd.Series) -> tuple[float, float, float]:
    return mean_interval(values) if len(values) >= 2 else (float(values.mean()), math.nan, math.nan)


def _ci(low: float, high: float, scale: float = 100.0, unit: str = " %") -> str:
    if math.isnan(low + high):
        return "no interval (one seed)"
    return f"95 % CI {scale * low:.2f} to {scale * high:.2f}{unit}"


def claims(runs: pd.DataFrame, spikes: pd.DataFrame, chips: pd.DataFrame,
           flips: pd.DataFrame | None = None, fronts: pd.DataFrame | None = None) -> pd.DataFrame:
    """The papers' claims beside what this run measured, one row per (claim, dataset): ``claim``,
    ``dataset``, ``measured`` (with its 95 % confidence interval over seeds where there are seeds),
    ``verdict`` (one of :data:`VERDICTS`) and ``why``.

    ``runs`` has one row per trained student (``dataset``, ``variant``, ``seed``, ``accuracy``, ``spikes``);
    the other tables are those of the module docstring, and ``fronts`` the matched comparisons of KD's
    temperature fronts (:func:`kdlib.report.studies.fronts`, one row per dataset). A claim about a quantity that
    should be reached is *reproduced* when the whole interval reaches it, *refuted* when none of it does, and
    *inconclusive* otherwise, or when the run does not measure what the paper measured (the ``why`` column
    says which)."""
    rows = []
    means = seed_means(runs)
    spikes, chips = _read(spikes, SPIKES_KEYS), _read(chips, CHIPS_KEYS)
    for dataset in dict.fromkeys(runs.dataset):
        def add(claim: str | None, measured: str, verdict: str, why: str, dataset: str = dataset) -> None:
            rows.append({"claim": claim, "dataset": dataset, "measured": measured, "verdict": verdict, "why": why})

        spikes_pair, acc_pair = (_paired(runs, dataset, "hetero_kd", "kd", c) for c in ("spikes", "accuracy"))
        if len(spikes_pair):
            fewer = _spike_saving(spikes_pair.hetero_kd, spikes_pair.kd)
            gain = (paired_difference(acc_pair.hetero_kd, acc_pair.kd) if len(acc_pair) >= 2 else None)
            d_mean, d_low, d_high = (gain.mean, gain.low, gain.high) if gain else (
                float((acc_pair.hetero_kd - acc_pair.kd).mean()), math.nan, math.nan)
            spike_verdict = _against(fewer[1], fewer[2], 0.65)
            no_loss = "refuted" if d_high < 0 else "reproduced" if d_low >= 0 else "inconclusive"
            why = {"refuted": "the interval of the spike reduction lies below 65 %",
                   "reproduced": "the interval of the spike reduction reaches 65 %",
                   "inconclusive": "the interval of the spike reduction includes 65 %"}[spike_verdict]
            why += {"refuted": "; accuracy is lost", "reproduced": "; no accuracy is lost",
                    "inconclusive": "; the accuracy interval includes 0 (no change detectable either way)"}[no_loss]
            add(PAPERS["lee"].claim,
                f"{_spikes_text(fewer, 1)} at {_points(d_mean)} "
                f"({_ci(d_low, d_high, unit=' points')}), {len(spikes_pair)} seeds paired",
                *_on_papers_dataset(dataset, _combine(spike_verdict, no_loss), why))
        front = fronts[fronts.dataset == dataset] if fronts is not None and "dataset" in fronts else None
        if front is not None and len(front):
            f = front.iloc[0]
            at_match = ("no heterogeneous pair within the margin" if pd.isna(f.get("saving")) else
                        f"{_fewer(f['saving'], 1)} spikes within {100 * f['match']:.1f} points (τ_T "
                        f"{f['hetero.tau_teacher']:g}, τ_S {f['hetero.tau_student']:g})")
            most = (f"at most {_fewer(f['largest_saving.saving'])} at any accuracy (τ_T "
                    f"{f['largest_saving.tau_teacher']:g}, τ_S {f['largest_saving.tau_student']:g}, "
                    f"{_points(f['largest_saving.accuracy_difference'])})")
            add(PAPERS["lee_front"].claim,
                f"{at_match}; {most}; against plain KD's most accurate point (τ {f['reference.tau_teacher']:g})",
                *_on_papers_dataset(dataset, f["paper"], "KD's front over (τ_T, τ_S) on the validation split, one "
                                    "seed per pair (no interval): reproduced if a pair within the margin saves 65 %, "
                                    "refuted if no pair saves 65 % at any accuracy"))
        ste = [v for v in ("ste_discontinuous", "ste_continuous") if (dataset, v) in means.index]
        if dataset.startswith("mnist") and ste:
            better = max(ste, key=lambda v: means.loc[(dataset, v), "accuracy"])
            acc = _interval(runs[(runs.dataset == dataset) & (runs.variant == better)].accuracy)
            verdict = _against(acc[1], acc[2], 0.98)
            add(PAPERS["yin"].claim,
                f"{100 * acc[0]:.2f} % ({better}, the better STE variant; {_ci(acc[1], acc[2])})", verdict,
                {"reproduced": "the whole interval lies above 98 %", "refuted": "the whole interval lies below 98 %",
                 "inconclusive": "the interval includes 98 %"}[verdict])
        part = means.xs(dataset, level="dataset")
        best = str(part["accuracy"].idxmax())
        acc = _interval(runs[(runs.dataset == dataset) & (runs.variant == best)].accuracy)
        add(PAPERS["fang"].claim,
            f"{100 * acc[0]:.2f} % ({best}, fully connected student; {_ci(acc[1], acc[2])})", "inconclusive",
            "not the paper's network: a convolutional PLIF network against a fully connected LIF student")
        if dataset in spikes.index:
            s = spikes.loc[dataset]
            steps = s.get("conversion_steps_to_match_best")
            if steps is None or pd.isna(steps):
                latency, verdict = (f"the conversion never reaches {s.best_variant}'s {100 * s.best_accuracy:.2f} % "
                                    f"(T = {s.best_steps:g}) in the steps it was run for"), "inconclusive"
            else:
                latency = (f"the conversion needs {steps:g} steps to match {s.best_variant} at T = {s.best_steps:g}: "
                           f"{s.conversion_latency_ratio:.3g}×")
                verdict = "reproduced" if s.conversion_latency_ratio >= 20 else "refuted"
            add(PAPERS["lasnn"].claim, latency,
                verdict, "one conversion of one teacher (no interval), on this dataset with fully connected networks; "
                "the paper's are convolutional networks on CIFAR and Tiny ImageNet")
            add(PAPERS["seenn"].claim,
                f"{s['early_exit_mean_steps_within_0.1_points']:.2f} average steps within 0.1 points of "
                f"{s.best_variant}'s full-T accuracy", "inconclusive",
                "SEENN-I (confidence threshold) on this dataset; the claim is SEENN-II's on CIFAR-10")
            add(PAPERS["yin_energy"].claim,
                f"{s.best_variant}: {s.best_energy_45nm_nj:,.0f} nJ (45 nm model), {s.best_energy_loihi_nj:,.0f} nJ "
                f"(Loihi model); the ANN teacher {s.teacher_energy_45nm_nj:,.0f} nJ (45 nm)", "inconclusive",
                "per-operation estimates of another network, not a measurement on the authors' chip")
        if flips is not None and "dataset" in flips:
            loihi = flips[(flips.dataset == dataset) & flips.hardware.str.startswith("Loihi")]
            if len(loihi):
                cheaper = int((loihi.ratio < 1).sum())
                verdict = "reproduced" if cheaper == 0 else "refuted" if cheaper == len(loihi) else "inconclusive"
                add(PAPERS["davies"].claim,
                    f"on Loihi the most accurate student costs {loihi.ratio.min():.3g}–{loihi.ratio.max():.3g}× the "
                    f"INT8 teacher at 45 nm ({cheaper} of {len(loihi)} estimates cheaper)", verdict,
                    "estimates under every Loihi cost table and input convention of the energy tables")
        for _, chip in chips[chips.dataset == "mnist"].iterrows() if dataset == "mnist" and not chips.empty else ():
            add(PAPERS["renner"].claim,
                f"the {chip.variant} student, {'-'.join(map(str, chip.hidden))}-10, at "
                f"{100 * chip.lava_accuracy:.2f} % in Lava, {chip.loihi_energy_per_image_nj / 1000:,.1f} µJ per image "
                "on the pre-silicon Loihi model",
                "inconclusive", "an estimate for another network, not a measurement on the chip")
    return pd.DataFrame(rows, columns=["claim", "dataset", "measured", "verdict", "why"])


def significance(comparisons: pd.DataFrame) -> list[str]:
    """One sentence per dataset and baseline from :func:`kdlib.measure.stats.compare_variants`'s test accuracy rows."""
    out = []
    rows = comparisons[comparisons.measure == "accuracy"]
    for (dataset, baseline), part in rows.groupby(["dataset", "baseline"], sort=False):
        said = [f"{verdict}: {', '.join(group.variant)}" for verdict, group in part.groupby("verdict", sort=False)]
        out.append(f"On {dataset}, test accuracy against {baseline} (paired by seed, {int(part.seeds.min())} seeds, "
                   f"Holm-corrected, α = 0.05): " + "; ".join(said) + ".")
    return out


def _energy_finding(dataset: str, flips: pd.DataFrame) -> str | None:
    """One sentence on where the most accurate student costs less than the teacher, and where more."""
    part = flips[flips.dataset == dataset] if "dataset" in flips else flips.iloc[0:0]
    if part.empty:
        return None
    student = part.student.iloc[0]
    said = []
    for label, rows in (("at 45 nm", part[part.hardware.str.startswith("45 nm")]),
                        ("on Loihi, against the INT8 teacher at 45 nm,", part[part.hardware.str.startswith("Loihi")])):
        if rows.empty:
            continue
        cheaper = int((rows.ratio < 1).sum())
        said.append(f"{label} it costs less under {cheaper} of {len(rows)} estimates "
                    f"(energy ratio {rows.ratio.min():.3g}–{rows.ratio.max():.3g})")
    return (f"On {dataset}, the sign of the energy comparison depends on the accounting: against the ANN teacher "
            f"(FP32 against FP32, INT8 against INT8), the most accurate student ({student}) "
            + "; ".join(said) + ".")


def _paired_sentence(comparisons: pd.DataFrame | None, dataset: str, variant: str, baseline: str) -> str | None:
    """The paired comparison of test accuracy in words, where :func:`kdlib.measure.stats.compare_variants` made it."""
    if comparisons is None or comparisons.empty:
        return None
    row = comparisons[(comparisons.dataset == dataset) & (comparisons.measure == "accuracy")
                      & (comparisons.variant == variant) & (comparisons.baseline == baseline)]
    if row.empty:
        return None
    r = row.iloc[0]
    return (f"95 % CI {100 * r.low:+.2f} to {100 * r.high:+.2f} over {int(r.seeds)} paired seeds, Holm-corrected "
            f"p = {r.p_holm:.2g}: {r.verdict}")


def front(matched: pd.DataFrame) -> list[str]:
    """The fronts in words, one sentence per dataset (``matched``: :func:`kdlib.report.studies.fronts`'s second table,
    :func:`kdlib.stages.front.matched` per dataset)."""
    out = []
    for _, f in matched.iterrows():
        margin = f"{100 * f.match:.1f} points"
        text = (f"On {f.dataset} (validation split, one seed per point), plain KD is most accurate at τ = "
                f"{f['reference.tau_teacher']:g} ({100 * f['reference.val_accuracy']:.2f} %, "
                f"{f['reference.spikes_per_image']:,.0f} spikes per image). ")
        if pd.isna(f.get("saving")):
            text += f"No heterogeneous pair comes within {margin} of it. "
        else:
            text += (f"Within {margin} of it, heterogeneous KD's fewest spikes come from τ_T = "
                     f"{f['hetero.tau_teacher']:g}, τ_S = {f['hetero.tau_student']:g}: {_fewer(f.saving, 1)} "
                     f"({_points(f['hetero.accuracy_difference'])}), ")
            text += ("reaching the 50 % this study asked for" if f.reaches_half else
                     f"{50 - 100 * f.saving:.1f} percentage points short of the 50 % this study asked for")
            for key, what in (("over_plain", "plain KD's own fewest within the margin"),
                              ("over_rate", "a firing-rate penalty's fewest within the margin")):
                if not pd.isna(f.get(key)):
                    text += f"; {_fewer(f[key])} than {what}"
            text += ". "
        verdict, _ = _on_papers_dataset(f.dataset, f.paper, "")  # the claims table's verdict, in the same words
        on_mnist = "" if f.dataset.startswith("mnist") else f" (the paper's figure is on MNIST; would read: {f.paper})"
        text += (f"The most any heterogeneous pair saves is {_fewer(f['largest_saving.saving'])} "
                 f"(τ_T = {f['largest_saving.tau_teacher']:g}, τ_S = {f['largest_saving.tau_student']:g}, "
                 f"{_points(f['largest_saving.accuracy_difference'])}); Lee et al.'s 65 % at no loss of accuracy: "
                 f"{verdict}{on_mnist}. A margin of {margin} is below the noise of one seed on "
                 "the validation split; the comparisons paired by seed on the test set are the tested ones.")
        out.append(text)
    return out


CONTROLS = (("hetero_kd", "rate_reg", "against a plain firing-rate penalty (rate_reg)"),
            ("kd_per_step", "kd", "with the per-step objective, against KD"))


def controls(runs: pd.DataFrame) -> list[str]:
    """The two controls (:data:`CONTROLS`) in words, paired by seed on the test set: heterogeneous-temperature
    KD against a plain firing-rate penalty (``rate_reg``), and KD with the per-step objective against KD. The
    accuracy p-values are Holm-corrected over the controls of a dataset (their own family: ``kd_per_step``
    against ``kd`` is also in the comparisons table, corrected there over that table's family)."""
    out = []
    for dataset in dict.fromkeys(runs.dataset):
        made = []
        for variant, baseline, what in CONTROLS:
            spikes, acc = (_paired(runs, dataset, variant, baseline, c) for c in ("spikes", "accuracy"))
            if len(spikes) >= 2:
                made.append((variant, what, _spike_saving(spikes[variant], spikes[baseline]),
                             paired_difference(acc[variant], acc[baseline])))
        for (variant, what, fewer, gain), p in zip(made, holm([g.p for *_, g in made]), strict=True):
            out.append(f"On {dataset}, {variant} {what}: {_spikes_text(fewer)} per image at "
                       f"{_points(gain.mean)} of test accuracy "
                       f"({_ci(gain.low, gain.high, unit=' points')}, p = {p:.2g} Holm-corrected over the "
                       f"{len(made)} controls), {gain.n} seeds paired.")
    return out


def findings(students: pd.DataFrame, teachers: pd.Series, chips: pd.DataFrame,
             flips: pd.DataFrame | None = None, comparisons: pd.DataFrame | None = None) -> list[str]:
    """The study's results in sentences, one per finding (``teachers``: test accuracy by dataset; ``flips``
    and ``comparisons``, where given, as :func:`kdlib.measure.energy.verdicts` and
    :func:`kdlib.measure.stats.compare_variants` make them)."""
    out = []
    chips = _read(chips, CHIPS_KEYS)
    for dataset, part in students.groupby(level="dataset", sort=False):
        part = part.droplevel("dataset")
        best, worst = str(part["accuracy"].idxmax()), str(part["accuracy"].idxmin())
        seeds = int(part["seeds"].min())
        std = part.loc[best, "accuracy_std"]
        spread = f"± {100 * std:.2f}, " if not pd.isna(std) else ""
        text = (f"On {dataset}, the most accurate student is {best} at {100 * part.loc[best, 'accuracy']:.2f} % "
                f"({spread}{seeds} seed{'' if seeds == 1 else 's'}), the least accurate {worst} at "
                f"{100 * part.loc[worst, 'accuracy']:.2f} %; the ANN teacher reaches "
                f"{100 * teachers.get(dataset, math.nan):.2f} %.")
        if "scratch" in part.index and best != "scratch":
            gap = part.loc[best, "accuracy"] - part.loc["scratch", "accuracy"]
            paired = _paired_sentence(comparisons, str(dataset), best, "scratch")
            if paired:
                text += f" The best student is {_points(gap)} from the student trained from scratch ({paired})."
            else:
                spread = max(part.loc[best, "accuracy_std"], part.loc["scratch", "accuracy_std"])
                size = "within" if abs(gap) <= spread else "outside"
                text += (f" The best student is {_points(gap)} from the student trained from scratch, {size} one "
                         "seed standard deviation (no test made).")
        elif best == "scratch":
            text += " No distilled student is more accurate than the one trained from scratch."
        out.append(text)
        if {"kd", "hetero_kd"} <= set(part.index):
            kd, hetero = part.loc["kd"], part.loc["hetero_kd"]
            saving = 1 - hetero.spikes / kd.spikes
            amount = _fewer(saving, 1 if abs(saving) < 0.1 else 0)  # one decimal where 0 % would hide it
            out.append(f"On {dataset}, heterogeneous-temperature KD fires {amount} spikes per image "
                       f"than KD (means over seeds: {hetero.spikes:,.0f} against {kd.spikes:,.0f}) at "
                       f"{_points(hetero.accuracy - kd.accuracy)}.")
        energy = None if flips is None else _energy_finding(str(dataset), flips)
        if energy:
            out.append(energy)
    for _, chip in chips.iterrows() if not chips.empty else ():
        out.append(f"On {chip.dataset}, the best deployed student ({chip.variant}, in Loihi's integers, "
                   f"T = {chip.steps}) reaches {100 * chip.lava_accuracy:.2f} % in Lava's fixed-point simulation "
                   f"({100 * chip.float_accuracy:.2f} % as a float network), and Lava predicts the same class as the "
                   f"PyTorch model of the same integers on {100 * chip.agreement:.2f} % of {chip.images:,} test "
                   "images; "
                   f"the pre-silicon Loihi model puts it at {chip.loihi_energy_per_image_nj:,.0f} nJ per image "
                   f"against {chip.teacher_energy_45nm_per_image_nj:,.0f} nJ for the ANN teacher at 45 nm.")
    return out


def abstract(students: pd.DataFrame, teachers: pd.Series, chips: pd.DataFrame, params: Any) -> str:
    """One paragraph: what the study did and what it found (``params``: the validated ``params.yaml``)."""
    chips = _read(chips, CHIPS_KEYS)
    datasets = list(dict.fromkeys(students.index.get_level_values("dataset")))
    variants = list(dict.fromkeys(students.index.get_level_values("variant")))
    student = params.student
    did = (f"This run distils an ANN teacher ({'-'.join(map(str, [784, *params.teacher.hidden, 10]))}) into "
           f"spiking students ({'-'.join(map(str, [784, *student.hidden, 10]))}, T = {student.steps}) with "
           f"{len(variants)} methods on {' and '.join(datasets)}, each trained on {len(params.distill.seeds)} seeds "
           f"for {student.epochs} epochs under identical conditions, selected on validation accuracy and "
           "measured once on the test set.")
    if params.tune.use == "tuned":
        did += (f" Every method's hyperparameters and learning rate were first tuned on the validation split with "
                f"the same budget ({params.tune.trials} trials of {params.tune.epochs} epochs, Optuna's TPE).")
    found = []
    for dataset, part in students.groupby(level="dataset", sort=False):
        part = part.droplevel("dataset")
        lo, hi = part["accuracy"].min(), part["accuracy"].max()
        found.append(f"on {dataset} the methods span {100 * lo:.2f}–{100 * hi:.2f} % test accuracy "
                     f"(teacher {100 * teachers.get(dataset, math.nan):.2f} %)")
    text = f"{did} Measured: {'; '.join(found)}."
    if not chips.empty:
        deployed = "; ".join(f"{chip.dataset}: {chip.variant} at {100 * chip.lava_accuracy:.2f} %"
                             for _, chip in chips.iterrows())
        text += (f" The spiking students run in Lava's Loihi simulation in the chip's integers; the best of each "
                 f"dataset on the whole test set ({deployed}), Lava and the PyTorch model of the same integers "
                 f"agreeing on {100 * chips.agreement.min():.2f} % of the images or more.")
    return text


def _t_quantile(seeds: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, seeds - 1)) if seeds >= 2 else math.inf


def _weights(inputs: int, hidden: list[int], classes: int = 10) -> int:
    widths = [inputs, *hidden, classes]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=False))


def limitations(students: pd.DataFrame, params: Any) -> list[str]:
    """What this run cannot show, with the numbers that bound it."""
    seeds = len(params.distill.seeds)
    spread = float(students["accuracy_std"].median())
    by_dataset = students.groupby(level="dataset")["accuracy"]
    gaps = by_dataset.max() - by_dataset.min()
    closest = by_dataset.apply(lambda a: a.sort_values().diff().min())
    tune = params.tune
    if tune.use == "tuned":
        tuning = (f"Each method was tuned with the same small budget: {tune.trials} trials of {tune.epochs} epochs "
                  f"(the students then train for {params.student.epochs}), over up to "
                  f"{max(len(s) for s in tune.space.values())} hyperparameters; a larger budget, or trials as long as "
                  "the final training, could still move a method, and the studies' histories show which were still "
                  "improving.")
    else:
        tuning = ("Each method runs at one hand-set point of its hyperparameters (`variants` in `params.yaml`, "
                  "`tune.use: hand-set`), not tuned on the validation split: a method may lose for want of a good "
                  "setting.")
    return [
        tuning,
        f"{seeds} seed{'' if seeds == 1 else 's'} per method: the median seed standard deviation of test "
        f"accuracy is {100 * spread:.2f} "
        f"points, while the methods of one dataset span {100 * gaps.min():.2f} to {100 * gaps.max():.2f} points "
        f"and the closest two differ by as little as {100 * closest.min():.2f}. With {seeds} paired seeds a 95 % "
        f"interval spans about ±{_t_quantile(seeds):.2f} standard errors, so most neighbouring methods are not told "
        "apart (the significance table lists which are).",
        f"Short training on a CPU ({params.student.epochs} epochs per student): absolute accuracies are below the "
        "papers', whose runs are far longer and whose networks are often convolutional.",
        "The students are deployed on Loihi's integers after training (no quantisation in training), with the "
        "image as Loihi 2's graded spikes; the straight-through students have no neuron model on the chip and are "
        "not deployed. Lava simulates the chip; nothing here ran on Loihi hardware.",
        "Energy comes from per-operation figures (45 nm CMOS; Loihi pre-silicon and silicon-calibrated), not from "
        "measurements of these networks; the estimates of one network span orders of magnitude between the "
        "accounting conventions, and the one measured figure shown (Renner et al. 2024) is of another network.",
        f"The ANN rival in the energy tables is the teacher ({_weights(784, params.teacher.hidden):,} weights), "
        f"{_weights(784, params.teacher.hidden) / _weights(784, params.student.hidden):.1f}× the student's "
        f"({_weights(784, params.student.hidden):,}); an ANN of the student's size is not trained or costed.",
        "The numbers are bit-for-bit reproducible at any thread count and on hosts of one CPU vendor; another "
        "vendor trains slightly different weights.",
    ]
