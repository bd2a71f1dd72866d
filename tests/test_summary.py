"""The README's results section (kdlib.report.summary), from the committed results."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kdlib.report.summary import markdown

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_summary_reads_the_committed_energy_verdicts() -> None:
    if not (ROOT / "results/report/energy_flips.csv").is_file():
        pytest.skip("no committed report")
    text = markdown(ROOT)
    flips = pd.read_csv(ROOT / "results/report/energy_flips.csv")
    for dataset, part in flips.groupby("dataset"):
        assert f"**{dataset}: energy per image, the most accurate student ({part.student.iloc[0]})" in text
    assert text.count("| 45 nm INT8 | zero-skipping (graded spikes on Loihi) |") == flips.dataset.nunique()


def test_the_readme_summary_reads_the_committed_deployments() -> None:
    paths = sorted((ROOT / "results/loihi").glob("*/deployed.csv"))
    if not paths:
        pytest.skip("no committed deployment")
    text = markdown(ROOT)
    for path in paths:
        assert f"**{path.parent.name}: the students on Loihi**" in text
        for variant in pd.read_csv(path).variant:
            assert f"| {variant} |" in text


def test_one_seed_gives_no_spread_rather_than_nan(tmp_path: Path) -> None:
    import json

    source = ROOT / "results/distill/mnist/kd/metrics.json"
    if not source.is_file():
        pytest.skip("no committed distillation run")
    metrics = json.loads(source.read_text())
    first = next(iter(metrics["seeds"]))
    metrics["seeds"] = {first: metrics["seeds"][first]}
    out = tmp_path / "results/distill/mnist/kd/metrics.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(metrics))
    text = markdown(tmp_path)
    assert "| kd |" in text and "nan" not in text and " ± " not in text.split("| kd |")[1].split("\n")[0]
