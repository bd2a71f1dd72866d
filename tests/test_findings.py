"""The claims table and the report's sentences, from a small table of metrics."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kdlib.core import params as P
from kdlib.report import findings


@pytest.fixture()
def runs() -> pd.DataFrame:
    return pd.DataFrame({
        "dataset": ["mnist"] * 6,
        "variant": ["scratch", "scratch", "kd", "kd", "hetero_kd", "hetero_kd"],
        "seed": [0, 1, 0, 1, 0, 1],
        "accuracy": [0.970, 0.972, 0.975, 0.977, 0.976, 0.978],
        "spikes": [1000.0, 1010.0, 900.0, 910.0, 450.0, 455.0],
    })


@pytest.fixture()
def means(runs: pd.DataFrame) -> pd.DataFrame:
    return findings.seed_means(runs)


def test_seed_means_average_each_variant_over_its_seeds(means: pd.DataFrame) -> None:
    assert list(means.index) == [("mnist", "scratch"), ("mnist", "kd"), ("mnist", "hetero_kd")]
    assert means.loc[("mnist", "kd"), "accuracy"] == pytest.approx(0.976)
    assert means.loc[("mnist", "kd"), "seeds"] == 2
    assert means.loc[("mnist", "kd"), "accuracy_std"] == pytest.approx(pd.Series([0.975, 0.977]).std())


def test_claims_measure_hetero_kd_against_kd_with_intervals_and_verdicts(runs: pd.DataFrame) -> None:
    table = findings.claims(runs, pd.DataFrame(), pd.DataFrame()).set_index("claim")
    assert set(table.verdict) <= set(findings.VERDICTS)
    lee = table.loc[table.index.str.startswith("Lee et al.")].iloc[0]
    # per seed 1 − 450/900 = 1 − 455/910 = 0.5 exactly; accuracy +0.10 points at both seeds
    assert lee.measured == ("50.0 % fewer spikes (95 % CI 50.00 to 50.00 % fewer) at +0.10 points "
                            "(95 % CI 0.10 to 0.10 points), 2 seeds paired")
    assert lee.verdict == "refuted" and lee.why.startswith("the interval of the spike reduction lies below 65 %")
    fang = table.loc[table.index.str.startswith("Fang et al.")].iloc[0]
    assert fang.measured.startswith("97.70 % (hetero_kd") and fang.verdict == "inconclusive"


def test_claim_verdicts_follow_the_interval() -> None:
    base = {"dataset": "mnist", "spikes": 100.0}
    runs = pd.DataFrame([base | {"variant": "ste_continuous", "seed": s, "accuracy": a}
                         for s, a in enumerate([0.985, 0.986, 0.9855])])
    yin = findings.claims(runs, pd.DataFrame(), pd.DataFrame()).set_index("claim").iloc[0]
    assert yin.name.startswith("Yin et al.") and yin.verdict == "reproduced"  # 98.43 to 98.67 %
    wide = runs.assign(accuracy=[0.97, 0.99, 0.98])
    assert findings.claims(wide, pd.DataFrame(), pd.DataFrame()).verdict.iloc[0] == "inconclusive"
    low = runs.assign(accuracy=[0.96, 0.962, 0.961])
    assert findings.claims(low, pd.DataFrame(), pd.DataFrame()).verdict.iloc[0] == "refuted"


def test_davies_claim_reads_the_energy_verdicts(runs: pd.DataFrame) -> None:
    flips = pd.DataFrame({"dataset": "mnist", "hardware": ["45 nm INT8", "Loihi (Davies 2018)", "Loihi (SANA-FE)"],
                          "ratio": [0.5, 14.0, 21.0]})
    table = findings.claims(runs, pd.DataFrame(), pd.DataFrame(), flips).set_index("claim")
    davies = table.loc[table.index.str.startswith("Davies et al.")].iloc[0]
    assert davies.verdict == "reproduced" and "14–21×" in davies.measured
    assert "(0 of 2 estimates cheaper)" in davies.measured


def test_the_best_student_against_scratch_uses_the_paired_test(runs: pd.DataFrame, means: pd.DataFrame) -> None:
    from kdlib.measure.stats import compare_variants

    lines = findings.findings(means, pd.Series({"mnist": 0.99}), pd.DataFrame(), comparisons=compare_variants(runs))
    assert ("+0.60 points from the student trained from scratch (95 % CI +0.60 to +0.60 over 2 paired seeds, "
            "Holm-corrected p = 1: no detectable difference)") in lines[0]


def test_significance_in_words() -> None:
    comparisons = pd.DataFrame({"dataset": "mnist", "measure": "accuracy", "baseline": "scratch", "seeds": 3,
                                "variant": ["kd", "hetero_kd", "attention_kd"],
                                "verdict": ["better", "no detectable difference", "worse"]})
    assert findings.significance(comparisons) == [
        "On mnist, test accuracy against scratch (paired by seed, 3 seeds, Holm-corrected, α = 0.05): better: kd; "
        "no detectable difference: hetero_kd; worse: attention_kd."]


def test_findings_and_limitations_say_what_was_measured(means: pd.DataFrame) -> None:
    teacher = pd.Series({"mnist": 0.99})
    lines = findings.findings(means, teacher, pd.DataFrame())
    assert lines[0].startswith("On mnist, the most accurate student is hetero_kd at 97.70 %")
    assert "+0.60 points from the student trained from scratch, outside one seed standard deviation" in lines[0]
    assert "50 % fewer spikes per image than KD" in lines[1]
    close = means.copy()
    close.loc[("mnist", "hetero_kd"), "spikes"] = close.loc[("mnist", "kd"), "spikes"] * 1.003
    assert "0.3 % more spikes per image than KD" in findings.findings(close, teacher, pd.DataFrame())[1]
    limits = findings.limitations(means, P.quick())
    assert any(line.startswith("1 seed per method: ") for line in limits)


@pytest.fixture()
def matched() -> pd.DataFrame:
    from kdlib.stages.front import matched

    front = pd.DataFrame({"kind": ["kd", "kd", "kd", "hetero_kd", "hetero_kd", "rate_reg"],
                          "tau_teacher": [1.0, 2.0, 4.0, 4.0, 4.0, None],
                          "tau_student": [1.0, 2.0, 4.0, 1.0, 0.5, None],
                          "rate_lambda": [None] * 5 + [0.3],
                          "val_accuracy": [0.9815, 0.980, 0.983, 0.9815, 0.975, 0.9812],
                          "spikes_per_image": [300.0, 350.0, 400.0, 250.0, 100.0, 280.0]})
    return pd.json_normalize([{"dataset": "mnist", **matched(front, 0.002)}])


def test_the_front_in_words_and_in_the_claims(runs: pd.DataFrame, matched: pd.DataFrame) -> None:
    [line] = findings.front(matched)
    assert line.startswith("On mnist (validation split, one seed per point), plain KD is most accurate at τ = 4 "
                           "(98.30 %, 400")
    assert "τ_T = 4, τ_S = 1: 37.5 % fewer (-0.15 points), 12.5 percentage points short of the 50 %" in line
    assert "17 % fewer than plain KD's own fewest within the margin; 11 % fewer than a firing-rate penalty's" in line
    assert "The most any heterogeneous pair saves is 75 % fewer (τ_T = 4, τ_S = 0.5, -0.80 points)" in line
    assert "65 % at no loss of accuracy: inconclusive" in line
    table = findings.claims(runs, pd.DataFrame(), pd.DataFrame(), fronts=matched)
    row = table[table.claim.str.startswith("Lee et al. 2021 at matched accuracy")].iloc[0]
    assert row.verdict == "inconclusive"
    assert row.measured.startswith("37.5 % fewer spikes within 0.2 points (τ_T 4, τ_S 1)")
    # the paper's figure is on MNIST: on another dataset the same measurement tests nothing
    other = findings.claims(runs.assign(dataset="fashion-mnist"), pd.DataFrame(), pd.DataFrame(),
                            fronts=matched.assign(dataset="fashion-mnist"))
    lee = other[other.claim.str.startswith("Lee et al.")]
    assert len(lee) == 2 and set(lee.verdict) == {"inconclusive"}
    assert lee.why.str.startswith("the paper's figure is on MNIST, this is fashion-mnist (would read: ").all()
    # and the sentence says what the table says
    [said] = findings.front(matched.assign(dataset="fashion-mnist", paper="refuted"))
    assert "65 % at no loss of accuracy: inconclusive (the paper's figure is on MNIST; would read: refuted)" in said


def test_the_controls_are_paired_by_seed(runs: pd.DataFrame) -> None:
    rate = runs[runs.variant == "kd"].assign(variant="rate_reg", spikes=[600.0, 606.0], accuracy=[0.974, 0.9755])
    lines = findings.controls(pd.concat([runs, rate]))
    assert len(lines) == 1 and lines[0].startswith("On mnist, hetero_kd against a plain firing-rate penalty (rate_reg)")
    assert "25 % fewer spikes (95 % CI " in lines[0] and "% fewer) per image" in lines[0]
    assert "2 seeds paired" in lines[0]
    more = findings.controls(pd.concat([runs, rate.assign(spikes=[300.0, 305.0])]))[0]  # hetero_kd fires more
    assert "50 % more spikes (95 % CI 44.38 to 54.80 % more) per image" in more  # 1 − 450/300, 1 − 455/305
    assert "Holm-corrected over the 1 controls" in lines[0]
    per_step = runs[runs.variant == "kd"].assign(variant="kd_per_step", accuracy=[0.976, 0.9785])
    both = findings.controls(pd.concat([runs, rate, per_step]))
    assert len(both) == 2 and all("Holm-corrected over the 2 controls" in line for line in both)


def test_the_claims_page_lists_the_sources_the_code_compares_with() -> None:
    """docs/claims.md's table of sources is findings.PAPERS, so the page and the claims table cannot disagree."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "claims.md").read_text()
    block = text.split("<!-- sources:start")[1].split("-->", 1)[1].split("<!-- sources:end -->")[0]
    assert block.lstrip("\n") == findings.sources_markdown()
