"""dvc.yaml lists, for every stage, exactly the kdlib code that decides its outputs.

A stage's code is the import closure of its notebook (or, for the reports, its module) inside kdlib, with
the package's ``__init__`` (it pins the numerical code paths), the stage runner that injects the
parameters, and the C source that :mod:`kdlib.native` compiles. A module missing from ``deps`` would
leave committed results stale while ``dvc status`` calls them up to date; one listed but not imported
reruns a stage for nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RUNNER = "kdlib/pipeline.py"
DATA_FILES = {"kdlib/native.py": {"kdlib/lif_kernel.c"}, "kdlib/reports.py": {"kdlib/templates"}}


def _kdlib_imports(source: str, package_module: str | None = None) -> set[str]:
    """The kdlib modules (as repository paths) that ``source`` imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "kdlib" or name.startswith("kdlib."):
                path = ROOT / (name.replace(".", "/") + ".py")
                if path.is_file():
                    found.add(path.relative_to(ROOT).as_posix())
    return found


def closure(start: set[str]) -> set[str]:
    """``start`` and every kdlib module it imports, directly or not, with the package's __init__ and data files."""
    seen, todo = set(), set(start) | {"kdlib/__init__.py"}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo |= _kdlib_imports((ROOT / path).read_text()) - seen
    for module, files in DATA_FILES.items():
        if module in seen:
            seen |= files
    return seen


def _notebook_source(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code"
                     and not cell.source.lstrip().startswith(("%", "!")))


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _body(stage: dict) -> dict:
    return stage.get("do", stage)


def _code_of(stage: dict) -> set[str]:
    deps = _body(stage)["deps"]
    notebooks = [d for d in deps if d.startswith("notebooks/")]
    if notebooks:
        start = _kdlib_imports(_notebook_source(ROOT / notebooks[0])) | {RUNNER}
    else:  # a stage run by a kdlib module: python -m kdlib.<module>
        module = _body(stage)["cmd"].split("-m ")[1].split()[0]
        start = {module.replace(".", "/") + ".py"}
    return closure(start)


@pytest.mark.parametrize("name", list(_stages()))
def test_stage_deps_are_its_code(name: str) -> None:
    stage = _stages()[name]
    listed = {d for d in _body(stage)["deps"] if d.startswith("kdlib/")}
    code = _code_of(stage)
    assert not code - listed, f"{name}: dvc.yaml does not list {sorted(code - listed)}, which decide its outputs"
    assert not listed - code, f"{name}: dvc.yaml lists {sorted(listed - code)}, which the stage never imports"


@pytest.mark.parametrize("name", [n for n, s in _stages().items() if "python -m kdlib.pipeline" in _body(s)["cmd"]])
def test_stage_params_cover_the_sections_it_is_given(name: str) -> None:
    from kdlib.pipeline import STAGES

    declared = {p.split(".")[0] for p in _body(_stages()[name]).get("params", [])}
    injected = set(STAGES[name].sections)
    assert injected <= declared, (f"{name}: receives {sorted(injected - declared)} "
                                  f"but dvc.yaml tracks only {sorted(declared)}")
