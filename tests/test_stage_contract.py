"""dvc.yaml lists, for every stage, exactly the kdlib code that decides its outputs.

A stage's code is the import closure of its notebook (or, for the reports, its module) inside kdlib, with
the package's ``__init__`` (it pins the numerical code paths), the stage runner that injects the
parameters, and the C source that :mod:`kdlib.snn.native` compiles. A module missing from ``deps`` would
leave committed results stale while ``dvc status`` calls them up to date; one listed but not imported
reruns a stage for nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import imported_names

ROOT = Path(__file__).resolve().parent.parent
RUNNER = "kdlib/stages/pipeline.py"
DATA_FILES = {"kdlib/snn/native.py": {"kdlib/snn/lif_kernel.c"},
              "kdlib/stages/reports.py": {"kdlib/stages/templates"}}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``, which never run."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None) if isinstance(node, ast.If) else None
        if "TYPE_CHECKING" in (getattr(test, "id", None), getattr(test, "attr", None)):
            skip |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    return [node for node in ast.walk(tree) if id(node) not in skip]


def _module_files(name: str) -> set[str]:
    """The files that importing the dotted ``name`` runs: the module and every package ``__init__`` above it."""
    found, parts = set(), name.split(".")
    for depth in range(1, len(parts) + 1):
        base = ROOT.joinpath(*parts[:depth])
        for path in (base / "__init__.py", base.with_suffix(".py")):
            if path.is_file():
                found.add(path.relative_to(ROOT).as_posix())
    return found


def _kdlib_imports(source: str) -> set[str]:
    """The kdlib files (as repository paths) that running ``source`` imports (``TYPE_CHECKING`` blocks aside)."""
    found = set()
    for name, _ in imported_names(_runtime_nodes(ast.parse(source))):
        if name == "kdlib" or name.startswith("kdlib."):
            found |= _module_files(name)
    return found


def closure(start: set[str]) -> set[str]:
    """``start`` and every kdlib file it imports, directly or not, with the package's __init__ and data files."""
    seen, todo = set(), set(start) | {"kdlib/__init__.py"}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo |= (_kdlib_imports((ROOT / path).read_text()) | _module_files(path[:-3].replace("/", "."))) - seen
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
        start = _module_files(module)
    return closure(start)


@pytest.mark.parametrize("name", list(_stages()))
def test_stage_deps_are_its_code(name: str) -> None:
    stage = _stages()[name]
    listed = {d for d in _body(stage)["deps"] if d.startswith("kdlib/")}
    code = _code_of(stage)
    assert not code - listed, f"{name}: dvc.yaml does not list {sorted(code - listed)}, which decide its outputs"
    assert not listed - code, f"{name}: dvc.yaml lists {sorted(listed - code)}, which the stage never imports"


@pytest.mark.parametrize("name", [n for n, s in _stages().items()
                                  if "python -m kdlib.stages.pipeline" in _body(s)["cmd"]])
def test_stage_params_cover_the_sections_it_is_given(name: str) -> None:
    from kdlib.stages.pipeline import STAGES

    declared = {p.split(".")[0] for p in _body(_stages()[name]).get("params", [])}
    injected = set(STAGES[name].sections)
    assert injected <= declared, (f"{name}: receives {sorted(injected - declared)} "
                                  f"but dvc.yaml tracks only {sorted(declared)}")
