"""kdlib is layered: a package imports only the packages below it.

::

    core      parameters, I/O, data, the results layout, numerics, the training loop
    snn       students, the LIF kernel, teachers, conversion, quantisation     (core)
    measure   evaluation, spikes, energy, statistics                           (core, snn)
    kd        objectives, distillation, trials, the tuning search              (core, snn, measure)
    loihi     fixed point, Lava, SLAYER, NIR                                   (core, snn, measure)
    stages    what dvc.yaml runs                                               (any library package)
    report    reading results back, findings, figures, tables                  (any library package)

The library packages (core to loihi) never import ``stages`` or ``report``, so a reader can take them into
another project; ``stages`` and ``report`` never import each other. Every import counts, also those inside
functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import imported_names

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "core": {"core"},
    "snn": {"core", "snn"},
    "measure": {"core", "snn", "measure"},
    "kd": {"core", "snn", "measure", "kd"},
    "loihi": {"core", "snn", "measure", "loihi"},
    "stages": {"core", "snn", "measure", "kd", "loihi", "stages"},
    "report": {"core", "snn", "measure", "kd", "loihi", "report"},
}


def _imported_packages(path: Path) -> dict[str, int]:
    """The kdlib packages ``path`` imports, each with the first line that does."""
    found: dict[str, int] = {}
    for name, line in imported_names(list(ast.walk(ast.parse(path.read_text())))):
        parts = name.split(".")
        if parts[0] == "kdlib" and len(parts) > 1 and parts[1] in ALLOWED:
            found.setdefault(parts[1], line)
    return found


def test_every_module_lives_in_a_package_of_the_layers() -> None:
    loose = sorted(p.name for p in (ROOT / "kdlib").glob("*.py") if p.name != "__init__.py")
    assert not loose, f"kdlib/{loose}: put each module in one of the packages {sorted(ALLOWED)}"
    assert {p.name for p in (ROOT / "kdlib").iterdir() if (p / "__init__.py").is_file()} == set(ALLOWED)


@pytest.mark.parametrize("package", list(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line} imports kdlib.{other}"
             for path in sorted((ROOT / "kdlib" / package).rglob("*.py"))
             for other, line in _imported_packages(path).items() if other not in ALLOWED[package]]
    assert not wrong, f"kdlib.{package} may import only {sorted(ALLOWED[package])}: {wrong}"
