"""The generated results page and the README's headline findings (kdlib.report.summary), from the committed
results."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kdlib.report import summary
from kdlib.report.summary import markdown

ROOT = Path(__file__).resolve().parent.parent


def test_the_results_page_reads_the_committed_energy_verdicts() -> None:
    if not (ROOT / "results/report/energy_flips.csv").is_file():
        pytest.skip("no committed report")
    text = markdown(ROOT)
    flips = pd.read_csv(ROOT / "results/report/energy_flips.csv")
    for dataset, part in flips.groupby("dataset"):
        assert f"**{dataset}: energy per image, the most accurate student ({part.student.iloc[0]})" in text
    assert text.count("| 45 nm INT8 | zero-skipping (graded spikes on Loihi) |") == flips.dataset.nunique()


def test_the_results_page_reads_the_committed_deployments() -> None:
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


def _committed_run() -> None:
    if not (ROOT / "results/distill").is_dir():
        pytest.skip("no committed distillation run")


def test_the_committed_results_page_is_what_the_committed_results_generate() -> None:
    _committed_run()
    page = (ROOT / summary.RESULTS_PAGE).read_text()
    assert page == summary.results_page(ROOT), (
        f"{summary.RESULTS_PAGE} is stale: run `{summary.COMMAND}` (--readme for the README's headline too)")
    assert page.startswith("# Results\n\nThis page is generated: `uv run python -m kdlib.report.summary`")


def test_the_readme_headline_is_what_the_committed_results_generate() -> None:
    _committed_run()
    readme = (ROOT / summary.README).read_text()
    block = summary.headline(ROOT)
    stale = f"the README's headline is stale: run `{summary.COMMAND} --readme`"
    assert readme == summary.with_headline(readme, block), stale
    assert 3 <= block.count("\n- ") + 1 <= 5  # three to five findings
    start = readme.index(summary.HEADLINE_START)
    assert readme[:start].count("\n") < 40  # on the first screen


def test_the_headline_sentences_are_the_findings_words() -> None:
    """Every headline bullet is a sentence of :func:`kdlib.report.findings.findings`, only wrapped."""
    _committed_run()
    from kdlib.report import findings

    s = summary.study(ROOT)
    said = set(findings.findings(s.means, s.teachers, s.chips, s.flips, s.comparisons))
    bullets = [" ".join(b.split()) for b in summary.headline(ROOT).removeprefix("- ").split("\n- ")]
    assert bullets and all(b in said for b in bullets)


def test_check_fails_on_a_stale_page_and_write_makes_it_current(tmp_path: Path) -> None:
    _committed_run()
    import shutil

    shutil.copytree(ROOT / "results", tmp_path / "results",
                    ignore=shutil.ignore_patterns("*.pt", "*.ipynb", "*.journal", "*.h5", "*.nir"))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "README.md").write_text(f"# x\n\n{summary.HEADLINE_START}\nold\n{summary.HEADLINE_END}\n\nrest\n")
    assert summary.main(["--root", str(tmp_path), "--check"]) == 1
    assert summary.main(["--root", str(tmp_path), "--readme"]) == 0
    assert summary.main(["--root", str(tmp_path), "--check"]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme and readme.endswith(f"{summary.HEADLINE_END}\n\nrest\n")
    assert (tmp_path / summary.RESULTS_PAGE).read_text() == (ROOT / summary.RESULTS_PAGE).read_text()


def test_a_readme_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="headline:start"):
        summary.with_headline("# no block here\n", "- a finding")
