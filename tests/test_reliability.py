"""Interruptions and reruns never corrupt the study: driven through the stage runner and DVC."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import dvc, venv_env

pytestmark = pytest.mark.slow

def _long_teacher(work: Path) -> None:
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["teacher"] |= {"hidden": [128], "epochs": 400}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _wait_for_training(work: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Block until papermill marks the notebook's training cell (the cell tagged ``training``) as running:
    papermill saves a cell's outputs only every 30 s, too late for a signal of its own, but saves the
    notebook as each cell starts."""
    out = work / "results" / "teacher" / "mnist-5k"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the stage ended before training started"
        for partial in out.glob(".partial-notebook-*.ipynb"):
            try:
                nb = nbformat.read(partial, as_version=4)
            except Exception:  # noqa: BLE001 - papermill may be rewriting it right now
                continue
            if any("training" in c.metadata.get("tags", []) and c.metadata.get("papermill", {}).get("status")
                   == "running" for c in nb.cells):
                time.sleep(2.0)  # well into the epochs
                return
        time.sleep(0.5)
    raise AssertionError("training did not start in time")


def _default_sigint() -> None:
    # a shell starts background jobs with SIGINT ignored, and children inherit that; a terminal's Ctrl-C
    # reaches processes that have not ignored it, so that is what the interrupted run must be
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(work: Path, *cmd: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *cmd], cwd=work, env=venv_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_default_sigint)


def _nothing_trusted_left(work: Path) -> None:
    out = work / "results" / "teacher" / "mnist-5k"
    for name in ("teacher.pt", "metrics.json", "history.csv", "notebook.ipynb"):
        assert not (out / name).exists(), f"{name} left behind by an interrupted run"
    assert not (work / "reports" / "teacher-mnist-5k.html").exists()
    assert not list(work.rglob(".partial-*")), "temporary files left behind"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_interrupted_dvc_repro_leaves_no_trusted_output_and_reruns(workbook: Path, sig: signal.Signals) -> None:
    _long_teacher(workbook)
    proc = _start(workbook, "-m", "dvc", "repro", "teacher@mnist-5k")
    _wait_for_training(workbook, proc)
    os.killpg(proc.pid, sig)  # the whole process group, as a terminal's Ctrl-C or a crash would
    proc.wait(timeout=60)
    time.sleep(2.0)  # a kernel orphaned by SIGKILL notices its parent is gone within a second
    assert proc.returncode != 0
    if sig == signal.SIGKILL:  # a hard kill cannot clean up the runner's temporary notebook; DVC ignores it
        for partial in workbook.rglob(".partial-*"):
            partial.unlink()
    _nothing_trusted_left(workbook)
    assert not (workbook / "dvc.lock").exists() or "teacher@mnist-5k" not in (workbook / "dvc.lock").read_text()

    params = yaml.safe_load((workbook / "params.yaml").read_text())
    params["teacher"]["epochs"] = 1
    (workbook / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(workbook, "repro", "teacher@mnist-5k")
    assert json.loads((workbook / "results/teacher/mnist-5k/metrics.json").read_text())["epochs"] == 1
    assert "Data and pipelines are up to date" in dvc(workbook, "status", "teacher@mnist-5k").stdout


def test_failed_notebook_is_kept_for_debugging_but_never_as_output(workbook: Path) -> None:
    (workbook / "results/teacher/mnist-5k").mkdir(parents=True)
    nb = nbformat.read(workbook / "notebooks/01_teacher.ipynb", as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell("raise RuntimeError('broken on purpose')"))
    nbformat.write(nb, workbook / "notebooks/01_teacher.ipynb")
    proc = subprocess.run([sys.executable, "-m", "kdlib.stages.pipeline", "teacher", "mnist-5k"], cwd=workbook,
                          env=venv_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "error: the teacher notebook failed: RuntimeError: broken on purpose" in proc.stderr
    out = workbook / "results/teacher/mnist-5k"
    assert (out / "notebook.failed.ipynb").is_file() and not (out / "notebook.ipynb").exists()
    assert not (out / "teacher.pt").exists()
