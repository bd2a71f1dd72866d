"""The pipeline as a user drives it: ``dvc repro`` in a copy of the workbook with tiny parameters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from conftest import dvc


def test_dvc_repro_produces_declared_outputs_and_is_idempotent(workbook: Path) -> None:
    params = yaml.safe_load((workbook / "params.yaml").read_text())
    params["distill"]["seeds"] = [0, 1]
    (workbook / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(workbook, "repro")
    out = workbook / "results" / "teacher" / "mnist-5k"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "history.csv", "metrics.json", "notebook.ipynb", "teacher.pt"]
    students = workbook / "results/distill/mnist-5k/kd"
    assert sorted(p.name for p in students.iterdir() if not p.name.startswith(".")) == [
        "history.csv", "metrics.json", "notebook.ipynb", "students"]
    assert sorted(p.name for p in (students / "students").iterdir()) == ["seed0.pt", "seed1.pt"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist-5k" and metrics["epochs"] == 1 and 0.5 < metrics["test_accuracy"] <= 1
    executed = nbformat.read(out / "notebook.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"]["teacher"]["hidden"] == [32, 32]
    reports = workbook / "reports"
    assert sorted(p.name for p in reports.iterdir()) == [
        "distill-mnist-5k-kd.html", "distill-mnist-5k-scratch.html", "index.html", "loihi-mnist-5k.html",
        "report.html",
        "spikes-mnist-5k.html", "teacher-mnist-5k.html"]
    html = (reports / "teacher-mnist-5k.html").read_text()
    assert "Stage 1: the ANN teacher" in html and "data:image/png;base64" in html
    assert "train_teacher(" not in html  # code cells are hidden
    index = (reports / "index.html").read_text()
    for page in ("teacher-mnist-5k.html", "distill-mnist-5k-kd.html"):
        assert f'href="{page}"' in index
    for page in reports.iterdir():  # self-contained: nothing is loaded from elsewhere
        text = page.read_text()
        assert not re.search(r'<(script|img|link)[^>]+(src|href)="(https?:)?//', text), page.name
    assert not list(workbook.rglob(".partial-*"))
    lock = yaml.safe_load((workbook / "dvc.lock").read_text())
    assert {"teacher@mnist-5k", "distill@mnist-5k-scratch", "distill@mnist-5k-kd", "spikes@mnist-5k",
            "loihi@mnist-5k", "report", "reports"} <= set(lock["stages"])
    spikes = json.loads((workbook / "results/spikes/mnist-5k/metrics.json").read_text())
    assert spikes["best_variant"] in {"scratch", "kd"} and spikes["teacher_energy_45nm_nj"] > 0
    headline = json.loads((workbook / "results/report/headline.json").read_text())
    assert headline["mnist-5k"]["best_variant"] in {"scratch", "kd"}
    chip = json.loads((workbook / "results/loihi/mnist-5k/metrics.json").read_text())
    assert chip["images"] == 1000 and chip["agreement"] == 1.0 and chip["nir_roundtrip_differences"] == 0
    kd = json.loads((students / "metrics.json").read_text())
    assert kd["variant"] == "kd" and kd["steps"] == 3 and sorted(kd["seeds"]) == ["0", "1"]
    for seed, run in kd["seeds"].items():
        assert run["seed"] == int(seed) and run["variant"] == "kd" and run["spikes_per_image"]["total"] > 0
    runs = list(kd["seeds"].values())
    assert kd["mean"]["test_accuracy"] == pytest.approx(sum(r["test_accuracy"] for r in runs) / 2, abs=1e-6)
    assert runs[0]["spikes_per_image"] != runs[1]["spikes_per_image"]  # two different students
    assert set(pd.read_csv(students / "history.csv").seed) == {0, 1}

    assert "Data and pipelines are up to date" in dvc(workbook, "status").stdout
    again = dvc(workbook, "repro")
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout

    # changing one variant's parameters invalidates that variant's runs only
    params = yaml.safe_load((workbook / "params.yaml").read_text())
    params["variants"]["kd"]["alpha"] = 0.7
    (workbook / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(workbook, "status").stdout
    assert "distill@mnist-5k-kd" in status
    assert "distill@mnist-5k-scratch" not in status and "teacher@mnist-5k" not in status


def test_bad_parameter_stops_the_stage_with_its_name(workbook: Path) -> None:
    params = yaml.safe_load((workbook / "params.yaml").read_text())
    params["teacher"]["epochs"] = 0
    (workbook / "params.yaml").write_text(yaml.safe_dump(params))
    proc = dvc(workbook, "repro", check=False)
    assert proc.returncode != 0
    assert "params.yaml: teacher.epochs = 0: Input should be greater than or equal to 1" in proc.stderr + proc.stdout
    assert not (workbook / "results" / "teacher" / "mnist-5k" / "notebook.ipynb").exists()
    assert not (workbook / "dvc.lock").exists()
