"""The pipeline as a user drives it: ``dvc repro`` in a copy of the workbook with tiny parameters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import yaml
from conftest import dvc


def test_dvc_repro_produces_declared_outputs_and_is_idempotent(workbook: Path) -> None:
    dvc(workbook, "repro")
    out = workbook / "results" / "teacher" / "mnist-5k"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "history.csv", "metrics.json", "notebook.ipynb", "teacher.pt"]
    assert sorted(p.name for p in (workbook / "results/distill/mnist-5k/kd/seed0").iterdir()
                  if not p.name.startswith(".")) == ["history.csv", "metrics.json", "notebook.ipynb", "student.pt"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist-5k" and metrics["epochs"] == 1 and 0.5 < metrics["test_accuracy"] <= 1
    executed = nbformat.read(out / "notebook.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"]["teacher"]["hidden"] == [32, 32]
    reports = workbook / "reports"
    assert sorted(p.name for p in reports.iterdir()) == [
        "distill-mnist-5k-kd-seed0.html", "distill-mnist-5k-scratch-seed0.html", "index.html", "loihi-mnist-5k.html",
        "report.html",
        "spikes-mnist-5k.html", "teacher-mnist-5k.html"]
    html = (reports / "teacher-mnist-5k.html").read_text()
    assert "Stage 1: the ANN teacher" in html and "data:image/png;base64" in html
    assert "train_teacher(" not in html  # code cells are hidden
    index = (reports / "index.html").read_text()
    for page in ("teacher-mnist-5k.html", "distill-mnist-5k-kd-seed0.html"):
        assert f'href="{page}"' in index
    for page in reports.iterdir():  # self-contained: nothing is loaded from elsewhere
        text = page.read_text()
        assert not re.search(r'<(script|img|link)[^>]+(src|href)="(https?:)?//', text), page.name
    assert not list(workbook.rglob(".partial-*"))
    lock = yaml.safe_load((workbook / "dvc.lock").read_text())
    assert {"teacher@mnist-5k", "distill@mnist-5k-scratch-0", "distill@mnist-5k-kd-0", "spikes@mnist-5k",
            "loihi@mnist-5k", "report", "reports"} <= set(lock["stages"])
    spikes = json.loads((workbook / "results/spikes/mnist-5k/metrics.json").read_text())
    assert spikes["best_variant"] in {"scratch", "kd"} and spikes["teacher_energy_45nm_nj"] > 0
    headline = json.loads((workbook / "results/report/headline.json").read_text())
    assert headline["mnist-5k"]["best_variant"] in {"scratch", "kd"}
    chip = json.loads((workbook / "results/loihi/mnist-5k/metrics.json").read_text())
    assert chip["images"] == 1000 and chip["agreement"] == 1.0 and chip["nir_roundtrip_differences"] == 0
    student = json.loads((workbook / "results/distill/mnist-5k/kd/seed0/metrics.json").read_text())
    assert student["variant"] == "kd" and student["steps"] == 3 and student["spikes_per_image"]["total"] > 0

    assert "Data and pipelines are up to date" in dvc(workbook, "status").stdout
    again = dvc(workbook, "repro")
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout

    # changing one variant's parameters invalidates that variant's runs only
    params = yaml.safe_load((workbook / "params.yaml").read_text())
    params["variants"]["kd"]["alpha"] = 0.7
    (workbook / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(workbook, "status").stdout
    assert "distill@mnist-5k-kd-0" in status
    assert "distill@mnist-5k-scratch-0" not in status and "teacher@mnist-5k" not in status


def test_bad_parameter_stops_the_stage_with_its_name(workbook: Path) -> None:
    params = yaml.safe_load((workbook / "params.yaml").read_text())
    params["teacher"]["epochs"] = 0
    (workbook / "params.yaml").write_text(yaml.safe_dump(params))
    proc = dvc(workbook, "repro", check=False)
    assert proc.returncode != 0
    assert "params.yaml: teacher.epochs = 0: Input should be greater than or equal to 1" in proc.stderr + proc.stdout
    assert not (workbook / "results" / "teacher" / "mnist-5k" / "notebook.ipynb").exists()
    assert not (workbook / "dvc.lock").exists()
