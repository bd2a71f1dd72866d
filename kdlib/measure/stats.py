"""Is a difference between two methods real? Paired comparisons over seeds, corrected for multiplicity.

The students of every variant are trained on the seeds of ``distill.seeds``, and a seed fixes a student's
initial weights and the order of its batches: two variants' students of one seed start from the same
weights and see the same batches, so their results are paired. :func:`paired_difference` therefore
compares two variants seed by seed: the mean of the per-seed differences, its confidence interval from
Student's t distribution with n − 1 degrees of freedom, and the two-sided p-value of the paired t-test
(``scipy.stats.ttest_rel``). Pairing removes what the seed contributes to both; with n seeds the
interval is wide (at n = 3 the t quantile is 4.30), which is the honest answer for few seeds.

:func:`compare_variants` makes every comparison the study asks for, per dataset and measure: every
variant against ``scratch`` and against ``kd`` (each pair once), with Holm's step-down correction
(:func:`holm`) across the comparisons of one dataset and one measure, and a verdict in words: better,
worse, or no detectable difference at the chosen level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

# a measure: its column in the runs table, its name in words, and whether a larger value is better
MEASURES: dict[str, tuple[str, bool]] = {"accuracy": ("test accuracy", True), "spikes": ("spikes per image", False)}


@dataclass(frozen=True)
class Difference:
    """The mean of ``a − b`` over paired seeds, its confidence interval and the paired t-test's p-value."""

    mean: float
    low: float
    high: float
    p: float
    n: int


_SAME = 1e-12  # values this close are one value: the seeds' metrics are counts over at most millions of images


def _constant(values: np.ndarray) -> bool:
    """Whether every value is the same, up to the rounding of the float arithmetic that made them."""
    return float(np.ptp(values)) <= _SAME * max(1.0, float(np.abs(values).max()))


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """Compare two paired samples (one value per seed each, in the same seed order).

    When every per-seed difference is the same (up to float rounding), the t statistic is undefined: the
    interval is that one value, and the p-value is that of the exact sign-flip (permutation) test of the
    paired differences: 1 if the difference is 0, else 2 / 2ⁿ (every flip of the n signs but the observed
    and its mirror gives a smaller mean)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"paired samples must be two sequences of equal length, got {x.shape} and {y.shape}")
    if len(x) < 2:
        raise ValueError(f"a paired comparison needs at least two seeds, got {len(x)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = x - y
    if _constant(d):  # equal up to rounding: 0.9800 − 0.9801 and 0.9803 − 0.9804 differ by 1e-16
        m = float(d.mean())
        return Difference(m, m, m, 1.0 if abs(m) <= _SAME else 2.0 ** (1 - len(d)), len(d))
    test = stats.ttest_rel(x, y)
    interval = test.confidence_interval(confidence)
    return Difference(float(d.mean()), float(interval.low), float(interval.high), float(test.pvalue), len(d))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """The mean of ``values`` (one per seed) and its t confidence interval: (mean, low, high)."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) < 2:
        raise ValueError(f"an interval needs at least two values, got {v.shape}")
    if _constant(v):
        m = float(v.mean())
        return m, m, m
    interval = stats.ttest_1samp(v, 0.0).confidence_interval(confidence)
    return float(v.mean()), float(interval.low), float(interval.high)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given (``nan`` stays ``nan`` and is not counted).

    The k-th smallest of m p-values is multiplied by m − k + 1, the results made non-decreasing in that
    order and capped at 1 (S. Holm, "A simple sequentially rejective multiple test procedure", 1979)."""
    p = np.asarray(pvalues, dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    out = np.full(p.shape, np.nan)
    known = np.flatnonzero(~np.isnan(p))
    order = known[np.argsort(p[known], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def compare_variants(runs: pd.DataFrame, baselines: Sequence[str] = ("scratch", "kd"), alpha: float = 0.05,
                     confidence: float = 0.95) -> pd.DataFrame:
    """Every variant against every baseline, per dataset and measure (:data:`MEASURES`).

    ``runs`` has one row per trained student: ``dataset``, ``variant``, ``seed`` and the measures'
    columns. Students are paired on the seeds both variants have. A pair is compared once (``scratch``
    against ``kd`` is not repeated as ``kd`` against ``scratch``). Returns one row per comparison:
    ``dataset``, ``measure``, ``variant``, ``baseline``, ``seeds``, ``difference`` (variant − baseline),
    ``low``, ``high``, ``p``, ``p_holm`` (Holm-corrected within the dataset and measure) and ``verdict``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    missing = {"dataset", "variant", "seed"} - set(runs)
    if missing:
        raise ValueError(f"runs lacks the columns {sorted(missing)}")
    rows = []
    for dataset, part in runs.groupby("dataset", sort=False):
        variants = list(dict.fromkeys(part.variant))
        for measure, (_, larger_is_better) in MEASURES.items():
            if measure not in part:
                continue
            table = part.pivot_table(index="seed", columns="variant", values=measure, aggfunc="first")
            family, done = [], set()
            for baseline in [b for b in baselines if b in variants]:
                for variant in variants:
                    if variant == baseline or frozenset((variant, baseline)) in done:
                        continue
                    done.add(frozenset((variant, baseline)))
                    pair = table[[variant, baseline]].dropna()
                    if len(pair) < 2:
                        continue
                    d = paired_difference(pair[variant], pair[baseline], confidence)
                    family.append({"dataset": dataset, "measure": measure, "variant": variant, "baseline": baseline,
                                   "seeds": d.n, "difference": d.mean, "low": d.low, "high": d.high, "p": d.p})
            for row, p_holm in zip(family, holm([r["p"] for r in family]), strict=True):
                row["p_holm"] = float(p_holm)
                row["verdict"] = _verdict(row["difference"], p_holm, alpha, larger_is_better)
            rows += family
    columns = ["dataset", "measure", "variant", "baseline", "seeds", "difference", "low", "high", "p", "p_holm",
               "verdict"]
    return pd.DataFrame(rows, columns=columns)


def _verdict(difference: float, p_holm: float, alpha: float, larger_is_better: bool) -> str:
    if np.isnan(p_holm) or p_holm >= alpha:
        return "no detectable difference"
    return "better" if (difference > 0) == larger_is_better else "worse"
