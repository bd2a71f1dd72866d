"""The claims table and the report's sentences, from a small table of metrics."""

from __future__ import annotations

import pandas as pd
import pytest

from kdlib import findings
from kdlib import params as P


@pytest.fixture()
def means() -> pd.DataFrame:
    runs = pd.DataFrame({
        "dataset": ["mnist"] * 6,
        "variant": ["scratch", "scratch", "kd", "kd", "hetero_kd", "hetero_kd"],
        "accuracy": [0.970, 0.972, 0.975, 0.977, 0.976, 0.978],
        "spikes": [1000.0, 1010.0, 900.0, 910.0, 450.0, 455.0],
    })
    return findings.seed_means(runs)


def test_seed_means_average_each_variant_over_its_seeds(means: pd.DataFrame) -> None:
    assert list(means.index) == [("mnist", "scratch"), ("mnist", "kd"), ("mnist", "hetero_kd")]
    assert means.loc[("mnist", "kd"), "accuracy"] == pytest.approx(0.976)
    assert means.loc[("mnist", "kd"), "seeds"] == 2
    assert means.loc[("mnist", "kd"), "accuracy_std"] == pytest.approx(pd.Series([0.975, 0.977]).std())


def test_claims_measure_hetero_kd_against_kd(means: pd.DataFrame) -> None:
    table = findings.claims(means, pd.DataFrame(), pd.DataFrame())
    lee = table[table.claim.str.startswith("Lee et al.")].workbook.item()
    assert lee == "50 % fewer spikes at +0.10 points"  # 452.5 against 905 spikes, 97.70 % against 97.60 %
    best = table[table.claim.str.startswith("Fang et al.")].workbook.item()
    assert best.startswith("97.70 % (hetero_kd")


def test_findings_and_limitations_say_what_was_measured(means: pd.DataFrame) -> None:
    teacher = pd.Series({"mnist": 0.99})
    lines = findings.findings(means, teacher, pd.DataFrame())
    assert lines[0].startswith("On mnist, the most accurate student is hetero_kd at 97.70 %")
    assert "+0.60 points from the student trained from scratch, outside one seed standard deviation" in lines[0]
    assert "50 % fewer spikes per image than KD" in lines[1]
    limits = findings.limitations(means, P.quick())
    assert any(line.startswith("1 seed per method: ") for line in limits)
