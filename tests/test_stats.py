"""Paired comparisons over seeds with Holm's correction (kdlib.measure.stats), by hand and on the committed study."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdlib.measure.stats import compare_variants, holm, mean_interval, paired_difference
from kdlib.report.summary import load_metrics

ROOT = Path(__file__).resolve().parent.parent
T_975_DF2 = 4.302652729911275  # Student's t, 97.5th percentile, 2 degrees of freedom (tables)


def test_paired_difference_by_hand() -> None:
    # differences 1, 2, 3: mean 2, sd 1, standard error 1/sqrt(3); t = 2·sqrt(3) on 2 degrees of freedom
    d = paired_difference([1.5, 3.0, 4.5], [0.5, 1.0, 1.5])
    half = T_975_DF2 / math.sqrt(3)
    assert (d.mean, d.n) == (2.0, 3)
    assert d.low == pytest.approx(2 - half) and d.high == pytest.approx(2 + half)
    # two-sided p of t = 2·sqrt(3) with 2 degrees of freedom: 1 − t / sqrt(t² + 2)  (closed form for df = 2)
    t = 2 * math.sqrt(3)
    assert d.p == pytest.approx(1 - t / math.sqrt(t * t + 2))


def test_paired_difference_without_spread_and_bad_input() -> None:
    assert paired_difference([1, 2, 3], [1, 2, 3]) == paired_difference([0, 0], [0, 0]).__class__(0, 0, 0, 1.0, 3)
    same = paired_difference([2, 3, 4], [1, 2, 3])  # no spread: the exact sign-flip test, 2 of 8 sign patterns
    assert (same.mean, same.low, same.high, same.n, same.p) == (1.0, 1.0, 1.0, 3, 0.25)
    # differences equal in decimals but not in floats (0.98 − 0.9801 and 0.9803 − 0.9804) have no spread either
    rounded = paired_difference([0.9800, 0.9803], [0.9801, 0.9804])
    assert rounded.p == 0.5 and rounded.low == rounded.high == pytest.approx(-1e-4)
    assert mean_interval([0.9800 - 0.9801, 0.9803 - 0.9804])[1:] == pytest.approx((-1e-4, -1e-4))
    with pytest.raises(ValueError, match="at least two seeds"):
        paired_difference([1.0], [2.0])
    with pytest.raises(ValueError, match="equal length"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_difference([1.0, 2.0], [1.0, 3.0], confidence=95)


def test_mean_interval_by_hand() -> None:
    mean, low, high = mean_interval([0.97, 0.98, 0.99])
    assert mean == pytest.approx(0.98)
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert (low, high) == pytest.approx((0.98 - half, 0.98 + half))
    assert mean_interval([0.5, 0.5]) == (0.5, 0.5, 0.5)


def test_holm_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → monotone: 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.01, float("nan"), 0.02])  # nan is not a comparison: m = 2
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([]).shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])


def _runs() -> pd.DataFrame:
    rows = []
    for seed, (scratch, kd, good, bad) in enumerate([(0.90, 0.91, 0.95, 0.80), (0.92, 0.915, 0.975, 0.81),
                                                     (0.91, 0.92, 0.955, 0.79), (0.93, 0.925, 0.985, 0.82)]):
        for variant, acc in (("scratch", scratch), ("kd", kd), ("good", good), ("bad", bad)):
            rows.append({"dataset": "d", "variant": variant, "seed": seed, "accuracy": acc, "spikes": 100.0 + seed})
    return pd.DataFrame(rows)


def test_compare_variants_pairs_corrects_and_says_it_in_words() -> None:
    table = compare_variants(_runs()).set_index(["measure", "variant", "baseline"])
    # vs scratch: kd, good, bad; vs kd: good, bad (kd–scratch once): 5 comparisons per measure
    assert len(table.loc["accuracy"]) == 5 and len(table.loc["spikes"]) == 5
    good = table.loc[("accuracy", "good", "scratch")]
    assert good.difference == pytest.approx(0.05125) and good.seeds == 4 and good.verdict == "better"
    assert table.loc[("accuracy", "bad", "kd")].verdict == "worse"
    assert table.loc[("accuracy", "kd", "scratch")].verdict == "no detectable difference"
    family = table.loc["accuracy"]
    assert family.p_holm.to_numpy() == pytest.approx(holm(family.p.to_numpy()))
    assert (table.loc["spikes"].verdict == "no detectable difference").all()  # identical spikes: p = 1
    with pytest.raises(ValueError, match="alpha"):
        compare_variants(_runs(), alpha=5)
    with pytest.raises(ValueError, match="seed"):
        compare_variants(_runs().drop(columns="seed"))


def test_compare_variants_on_the_committed_study() -> None:
    students = load_metrics(ROOT, "distill")
    if students.empty:
        pytest.skip("no committed distillation metrics")
    runs = students.rename(columns={"test_accuracy": "accuracy", "spikes_per_image.total": "spikes"})
    table = compare_variants(runs)
    variants = runs.variant.nunique()
    per_family = (variants - 1) + (variants - 2)  # every variant against scratch, then against kd but scratch
    assert (table.groupby(["dataset", "measure"]).size() == per_family).all()
    assert table.verdict.isin(["better", "worse", "no detectable difference"]).all()
    assert (table.low <= table.difference).all() and (table.difference <= table.high).all()
    assert (table.p_holm >= table.p - 1e-12).all() and np.nanmax(table.p_holm) <= 1
