"""The pipeline as a user drives it: one ``dvc repro`` of a copy of the workbook with tiny parameters.

The run happens once for the module (the ``built`` fixture, two seeds); each test checks one promise
of it, so a failure names what broke. The last tests change the copy (a parameter, a remote, a clone)
and come after every test that reads it as built.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
import torch
import yaml
from conftest import dvc, make_workbook

pytestmark = pytest.mark.slow
STAGES = {"teacher@mnist-5k", "tune@mnist-5k-scratch", "tune@mnist-5k-rate_reg", "tune@mnist-5k-kd",
          "front@mnist-5k", "distill@mnist-5k-scratch", "distill@mnist-5k-rate_reg", "distill@mnist-5k-kd",
          "spikes@mnist-5k", "loihi@mnist-5k", "report", "reports"}
TIMING = {"train_seconds", "train_images_per_second"}  # measured wall time: the only fields allowed to differ


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = make_workbook(tmp_path_factory.mktemp("pipeline") / "workbook", git=True)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["distill"]["seeds"] = [0, 1]
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(work, "repro")
    return work


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_every_stage_ran_and_is_locked(built: Path) -> None:
    assert STAGES <= set(yaml.safe_load((built / "dvc.lock").read_text())["stages"])


def test_teacher_writes_its_declared_outputs(built: Path) -> None:
    out = built / "results/teacher/mnist-5k"
    assert _names(out) == ["history.csv", "metrics.json", "notebook.ipynb", "teacher.pt"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist-5k" and metrics["epochs"] == 1 and 0.5 < metrics["test_accuracy"] <= 1


def test_the_executed_notebook_records_the_injected_parameters(built: Path) -> None:
    executed = nbformat.read(built / "results/teacher/mnist-5k/notebook.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"]["teacher"]["hidden"] == [32, 32]


def test_each_variant_writes_one_student_per_seed(built: Path) -> None:
    students = built / "results/distill/mnist-5k/kd"
    assert _names(students) == ["history.csv", "metrics.json", "notebook.ipynb", "students"]
    assert _names(students / "students") == ["seed0.pt", "seed1.pt"]
    assert set(pd.read_csv(students / "history.csv").seed) == {0, 1}


def test_the_students_train_with_their_studies_values(built: Path) -> None:
    for variant in ("scratch", "rate_reg", "kd"):
        best = json.loads((built / f"results/tune/mnist-5k/{variant}/best.json").read_text())
        trials = pd.read_csv(built / f"results/tune/mnist-5k/{variant}/trials.csv")
        assert best["trials"] == len(trials) == 3 and best["val_accuracy"] == trials.val_accuracy.max()
        run = json.loads((built / f"results/distill/mnist-5k/{variant}/metrics.json").read_text())
        assert run["tuning"] == "tuned" and run["values"]["lr"] == best["values"]["lr"]
    front = pd.read_csv(built / "results/front/mnist-5k/front.csv")
    assert list(front.kind) == ["kd", "hetero_kd", "kd", "rate_reg"]
    assert json.loads((built / "results/front/mnist-5k/metrics.json").read_text())["paper"] in (
        "reproduced", "refuted", "inconclusive")


def test_student_metrics_are_per_seed_with_their_mean(built: Path) -> None:
    kd = json.loads((built / "results/distill/mnist-5k/kd/metrics.json").read_text())
    assert kd["variant"] == "kd" and kd["steps"] == 3 and sorted(kd["seeds"]) == ["0", "1"]
    for seed, run in kd["seeds"].items():
        assert run["seed"] == int(seed) and run["variant"] == "kd" and run["spikes_per_image"]["total"] > 0
    runs = list(kd["seeds"].values())
    assert kd["mean"]["test_accuracy"] == pytest.approx(sum(r["test_accuracy"] for r in runs) / 2, abs=1e-6)
    assert runs[0]["spikes_per_image"] != runs[1]["spikes_per_image"]  # two different students


def test_spike_analysis_and_report_metrics(built: Path) -> None:
    spikes = json.loads((built / "results/spikes/mnist-5k/metrics.json").read_text())
    assert spikes["best_variant"] in {"scratch", "kd"} and spikes["teacher_energy_45nm_nj"] > 0
    assert spikes["counter_check_max_difference"] <= 0.01 and 0 < spikes["teacher_int8_accuracy"] <= 1
    energy = pd.read_csv(built / "results/spikes/mnist-5k/energy_conventions.csv")
    assert {"ANN teacher (FP32)", "ANN teacher (INT8)", "scratch", "kd"} <= set(energy.model)
    headline = json.loads((built / "results/report/headline.json").read_text())
    assert headline["mnist-5k"]["best_variant"] in {"scratch", "kd"}
    claims = pd.read_csv(built / "results/report/claims.csv")
    assert list(claims.columns) == ["claim", "dataset", "measured", "verdict", "why"]
    assert set(claims.dataset) == {"mnist-5k"} and set(claims.verdict) <= {"reproduced", "refuted", "inconclusive"}
    flips = pd.read_csv(built / "results/report/energy_flips.csv")
    assert set(flips.cheaper) <= {"SNN", "ANN"} and (flips.ratio > 0).all()


def test_the_study_report_reads_like_a_paper(built: Path) -> None:
    html = (built / "reports/report.html").read_text()
    for heading in ("This run", "Abstract", "Findings", "Headline: accuracy against energy",
                    "Which differences are real", "Beside the papers", "Limitations"):
        assert heading in html, heading
    assert "This run distils an ANN teacher" in html
    assert "mnist-5k: every student of stage 2 on Loihi" in html


def test_lava_agrees_with_pytorch(built: Path) -> None:
    chip = json.loads((built / "results/loihi/mnist-5k/metrics.json").read_text())
    assert chip["images"] == 1000 and chip["agreement"] == 1.0 and chip["nir_roundtrip_differences"] == 0
    assert chip["readout_agreement"] == 1.0 and chip["layer_spike_agreement"] == 1.0
    assert set(chip["deployed"]) == {"scratch", "rate_reg", "kd"} and chip["refused"] == {}
    assert all(d["agreement"] == d["readout_agreement"] == d["layer_spike_agreement"] == 1.0
               for d in chip["deployed"].values())
    # every deployed student's NIR file, replayed by norse, snnTorch and SpikingJelly on the test images
    assert set(chip["nir"]) == set(chip["deployed"])
    assert all(found["same_class"] == found["same_spike_counts"] == 1.0
               for importers in chip["nir"].values() for found in importers.values())
    assert chip["baseline"]["agreement"] == 1.0 and chip["baseline"]["images"] == 20


def test_every_report_is_rendered_and_indexed(built: Path) -> None:
    reports = built / "reports"
    assert _names(reports) == ["distill-mnist-5k-kd.html", "distill-mnist-5k-rate_reg.html",
                               "distill-mnist-5k-scratch.html", "index.html", "loihi-mnist-5k.html", "report.html",
                               "spikes-mnist-5k.html", "teacher-mnist-5k.html"]
    index = (reports / "index.html").read_text()
    for page in ("teacher-mnist-5k.html", "distill-mnist-5k-kd.html"):
        assert f'href="{page}"' in index


def test_reports_hide_code_show_figures_and_the_run_parameters(built: Path) -> None:
    html = (built / "reports/teacher-mnist-5k.html").read_text()
    assert "Stage 1: the ANN teacher" in html and "data:image/png;base64" in html
    assert "train_teacher(" not in html  # code cells are hidden
    distill = (built / "reports/distill-mnist-5k-kd.html").read_text()
    assert "This run" in distill and "variants.kd.tau_student" in distill


def test_reports_load_nothing_from_elsewhere(built: Path) -> None:
    for page in (built / "reports").iterdir():
        assert not re.search(r'<(script|img|link)[^>]+(src|href)="(https?:)?//', page.read_text()), page.name


def test_no_partial_file_is_left(built: Path) -> None:
    assert not list(built.rglob(".partial-*"))


def test_status_is_clean_and_a_second_repro_runs_nothing(built: Path) -> None:
    assert "Data and pipelines are up to date" in dvc(built, "status").stdout
    again = dvc(built, "repro")
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout


def _git(work: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args], cwd=work,
                          check=True, capture_output=True, text=True).stdout


def test_a_clone_pulls_the_results_from_a_remote_without_rerunning(built: Path, tmp_path: Path) -> None:
    """What the README's "Sharing results" section promises: push to a remote, clone, pull, up to date."""
    dvc(built, "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    _git(built, "add", "-A")
    _git(built, "commit", "-q", "-m", "the tiny study")
    dvc(built, "push")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(built), str(clone))
    assert not (clone / "reports").exists() and not (clone / "results/teacher/mnist-5k/teacher.pt").exists()
    dvc(clone, "pull")
    assert "Data and pipelines are up to date" in dvc(clone, "status").stdout
    index = (clone / "reports/index.html").read_text()
    assert 'href="report.html"' in index and (clone / "reports/report.html").stat().st_size > 0
    assert (clone / "results/teacher/mnist-5k/teacher.pt").stat().st_size > 0
    shutil.rmtree(clone)


def _without_timing(metrics: Any) -> Any:
    if isinstance(metrics, dict):
        return {k: _without_timing(v) for k, v in metrics.items() if k not in TIMING}
    if isinstance(metrics, list):
        return [_without_timing(v) for v in metrics]
    return metrics


def test_a_forced_rerun_trains_the_same_students(built: Path) -> None:
    """Rerunning a distillation run from the same parameters gives the same metrics and weights, timings aside."""
    run = built / "results/distill/mnist-5k/kd"
    first = json.loads((run / "metrics.json").read_text())
    weights = {p.name: torch.load(p, weights_only=True)["state_dict"] for p in sorted((run / "students").iterdir())}
    dvc(built, "repro", "--force", "--single-item", "distill@mnist-5k-kd")
    assert _without_timing(json.loads((run / "metrics.json").read_text())) == _without_timing(first)
    for name, state in weights.items():
        again = torch.load(run / "students" / name, weights_only=True)["state_dict"]
        assert all(torch.equal(state[k], again[k]) for k in state), name


def test_changing_one_variant_restales_only_its_runs(built: Path) -> None:
    params = yaml.safe_load((built / "params.yaml").read_text())
    params["variants"]["kd"]["alpha"] = 0.7
    (built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(built, "status").stdout
    assert "distill@mnist-5k-kd" in status
    assert "distill@mnist-5k-scratch" not in status and "teacher@mnist-5k" not in status


def test_bad_parameter_stops_the_stage_with_its_name(workbook: Path) -> None:
    params = yaml.safe_load((workbook / "params.yaml").read_text())
    params["teacher"]["epochs"] = 0
    (workbook / "params.yaml").write_text(yaml.safe_dump(params))
    proc = dvc(workbook, "repro", check=False)
    assert proc.returncode != 0
    assert "params.yaml: teacher.epochs = 0:" in proc.stderr + proc.stdout
    assert not (workbook / "results" / "teacher" / "mnist-5k" / "notebook.ipynb").exists()
    assert not (workbook / "dvc.lock").exists()
