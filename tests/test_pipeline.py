"""The pipeline as a user drives it: ``dvc repro`` in a copy of the workbook with tiny parameters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "data": {"datasets": ["mnist-5k"], "val_size": 500, "split_seed": 0},
    "teacher": {"arch": "mlp", "hidden": [32, 32], "dropout": 0.1, "epochs": 1, "batch_size": 100, "lr": 3.0e-3,
                "weight_decay": 0.0, "max_shift": 0, "seed": 0},
    "student": {"hidden": [24, 24], "steps": 3, "epochs": 1, "batch_size": 100, "lr": 3.0e-3},
    "variants": {"scratch": {"loss": "ce"},
                 "kd": {"loss": "kd", "alpha": 0.5, "tau_teacher": 2.0, "tau_student": 2.0}},
    "distill": {"variants": ["scratch", "kd"], "seeds": [0]},
}


def _dvc(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=work, env=env, text=True, capture_output=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture()
def workbook(tmp_path: Path) -> Path:
    """A copy of the workbook (code, notebooks, pipeline) with tiny parameters, under its own DVC repo."""
    work = tmp_path / "workbook"
    work.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, work / name)
    for name in ("kdlib", "notebooks"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    (work / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    _dvc(work, "init", "--no-scm", "-q")
    _dvc(work, "config", "core.analytics", "false")
    return work


def test_dvc_repro_produces_declared_outputs_and_is_idempotent(workbook: Path) -> None:
    _dvc(workbook, "repro")
    out = workbook / "results" / "teacher" / "mnist-5k"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "history.csv", "metrics.json", "notebook.ipynb", "teacher.pt"]
    assert sorted(p.name for p in (workbook / "results/distill/mnist-5k/kd/seed0").iterdir()
                  if not p.name.startswith(".")) == ["history.csv", "metrics.json", "notebook.ipynb", "student.pt"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist-5k" and metrics["epochs"] == 1 and 0.5 < metrics["test_accuracy"] <= 1
    executed = nbformat.read(out / "notebook.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"]["teacher"]["hidden"] == [32, 32]
    html = (workbook / "reports" / "teacher-mnist-5k.html").read_text()
    assert "Stage 1: the ANN teacher" in html and "data:image/png;base64" in html
    assert not list(workbook.rglob(".partial-*"))
    lock = yaml.safe_load((workbook / "dvc.lock").read_text())
    assert {"teacher@mnist-5k", "distill@mnist-5k-scratch-0", "distill@mnist-5k-kd-0"} <= set(lock["stages"])
    student = json.loads((workbook / "results/distill/mnist-5k/kd/seed0/metrics.json").read_text())
    assert student["variant"] == "kd" and student["steps"] == 3 and student["spikes_per_image"]["total"] > 0

    assert "Data and pipelines are up to date" in _dvc(workbook, "status").stdout
    again = _dvc(workbook, "repro")
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout

    # changing one variant's parameters invalidates that variant's runs only
    params = yaml.safe_load((workbook / "params.yaml").read_text())
    params["variants"]["kd"]["alpha"] = 0.7
    (workbook / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _dvc(workbook, "status").stdout
    assert "distill@mnist-5k-kd-0" in status
    assert "distill@mnist-5k-scratch-0" not in status and "teacher@mnist-5k" not in status


def test_bad_parameter_stops_the_stage_with_its_name(workbook: Path) -> None:
    params = yaml.safe_load((workbook / "params.yaml").read_text())
    params["teacher"]["epochs"] = 0
    (workbook / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _dvc(workbook, "repro", check=False)
    assert proc.returncode != 0
    assert "params.yaml: teacher.epochs = 0: Input should be greater than or equal to 1" in proc.stderr + proc.stdout
    assert not (workbook / "results" / "teacher" / "mnist-5k" / "notebook.ipynb").exists()
    assert not (workbook / "dvc.lock").exists()
