"""Run a stage notebook with papermill: the command behind every stage of ``dvc.yaml``.

::

    python -m kdlib.pipeline teacher mnist

validates the whole ``params.yaml`` first, then executes the stage's notebook with the sections it
needs injected as parameters, writes the executed notebook to ``results/<stage>/<dataset>/`` and
its HTML rendering to ``reports/``. Both are written atomically: an interrupted or failed run
leaves no executed notebook or report behind (a failed run keeps ``notebook.failed.ipynb`` next to
where the notebook would be, for debugging).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill
from nbconvert import HTMLExporter

from kdlib import params as P
from kdlib.io import atomic_path


@dataclass(frozen=True)
class Stage:
    """A notebook of the pipeline and the ``params.yaml`` sections it receives."""

    notebook: str
    sections: tuple[str, ...]


STAGES: dict[str, Stage] = {
    "teacher": Stage("notebooks/01_teacher.ipynb", ("data", "teacher")),
}


def results_dir(stage: str, dataset: str, root: Path) -> Path:
    """Where a stage writes its artefacts for one dataset."""
    return root / "results" / stage / dataset


def render_html(notebook: Path, dest: Path) -> None:
    """Render an executed notebook as a self-contained HTML report, code cells hidden."""
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    with atomic_path(dest) as tmp:
        tmp.write_text(body, encoding="utf-8")


def run(stage: str, dataset: str, *, params_file: Path, root: Path) -> Path:
    """Execute ``stage`` for ``dataset``; return the executed notebook's path."""
    if stage not in STAGES:
        raise P.ParamsError(f"stage = {stage!r}: unknown stage; choose one of {', '.join(STAGES)}")
    params = P.load(params_file)
    if dataset not in params.data.datasets:
        raise P.ParamsError(
            f"dataset = {dataset!r}: not in data.datasets of {params_file.name} ({', '.join(params.data.datasets)})"
        )
    spec = STAGES[stage]
    out_dir = results_dir(stage, dataset, root)
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"dataset": dataset, "out_dir": str(out_dir)}
    parameters |= {name: getattr(params, name).model_dump() for name in spec.sections}
    executed = out_dir / "notebook.ipynb"
    failed = out_dir / "notebook.failed.ipynb"
    failed.unlink(missing_ok=True)
    with atomic_path(executed) as tmp:
        try:
            papermill.execute_notebook(
                str(root / spec.notebook), str(tmp), parameters=parameters, kernel_name="python3",
                cwd=str(root / Path(spec.notebook).parent), progress_bar=False, log_output=True,
            )
        except BaseException:
            if tmp.exists():
                os.replace(tmp, failed)
            raise
        render_html(tmp, root / "reports" / f"{stage}-{dataset}.html")
    return executed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", help=f"one of {', '.join(STAGES)}")
    parser.add_argument("dataset", help="a dataset listed in data.datasets")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workbook folder (default: here)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        run(args.stage, args.dataset, params_file=root / "params.yaml", root=root)
    except P.ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except papermill.PapermillExecutionError as err:
        print(f"error: the {args.stage} notebook failed: {err.ename}: {err.evalue}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
