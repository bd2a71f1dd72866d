"""Run a stage notebook with papermill: the command behind every stage of ``dvc.yaml``.

::

    python -m kdlib.stages.pipeline teacher mnist

validates the whole ``params.yaml`` first, then executes the stage's notebook with the sections it
needs injected as parameters, writes the executed notebook to ``results/<stage>/<run>/``. It is written atomically: an
interrupted or failed run leaves no executed notebook behind (a failed run keeps
``notebook.failed.ipynb`` next to where the notebook would be, for debugging). The HTML reports are
rendered from the executed notebooks by a later stage (:mod:`kdlib.stages.reports`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill
from nbconvert.preprocessors import CoalesceStreamsPreprocessor
from traitlets.config import Config

from kdlib.core import params as P
from kdlib.core.io import atomic_path
from kdlib.core.layout import (
    BEST_FILE,
    NOTEBOOK_FILE,
    load_tuned,
    results_dir,
    results_root,
    run_key,
    student_path,
    study_dir,
)


@dataclass(frozen=True)
class Stage:
    """A notebook of the pipeline and the ``params.yaml`` sections it receives."""

    notebook: str
    sections: tuple[str, ...]
    per_dataset: bool = True  # run once per dataset (else once for the whole study)


STAGES: dict[str, Stage] = {
    "teacher": Stage("notebooks/01_teacher.ipynb", ("data", "teacher")),
    "distill": Stage("notebooks/02_distill.ipynb", ("data", "student")),
    "spikes": Stage("notebooks/03_spikes.ipynb", ("data", "spikes")),
    "loihi": Stage("notebooks/04_loihi.ipynb", ("data", "distill", "loihi")),
    "report": Stage("notebooks/05_report.ipynb", (), per_dataset=False),
}


def tidy(notebook: Path) -> None:
    """Merge each cell's stream outputs and apply carriage returns, so a progress bar reads as one line."""
    nb = nbformat.read(notebook, as_version=4)
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    nbformat.write(nb, notebook)


def stage_parameters(stage: str, dataset: str | None, params: P.Params, *, params_file: Path, root: Path,
                     variant: str | None = None) -> tuple[Path, dict]:
    """The output folder of one run of ``stage`` and the parameters its notebook receives: the stage contract.

    ``params`` is the validated ``params_file``; ``root`` is the workbook folder whose ``results/`` the run
    reads and writes.
    """
    if stage not in STAGES:
        raise P.ParamsError(f"stage = {stage!r}: unknown stage; choose one of {', '.join(STAGES)}")
    spec = STAGES[stage]
    if not spec.per_dataset:
        out_dir = results_dir(stage, [], root)
        return out_dir, {"results_root": str(results_root(root)), "params_file": str(params_file),
                         "out_dir": str(out_dir)}
    if dataset not in params.data.datasets:
        raise P.ParamsError(
            f"dataset = {dataset!r}: not in data.datasets of {params_file.name} ({', '.join(params.data.datasets)})"
        )
    key = run_key(dataset, variant if stage == "distill" else None)
    out_dir = results_dir(stage, key, root)
    parameters = {"dataset": dataset, "out_dir": str(out_dir)}
    parameters |= {name: getattr(params, name).model_dump() for name in spec.sections}
    teacher_dir = str(results_dir("teacher", [dataset], root))
    students_dir = str(results_dir("distill", [dataset], root))  # what spikes and loihi analyse
    if stage == "distill":
        if variant not in params.variants:
            raise P.ParamsError(f"variant = {variant!r}: not defined under variants "
                                f"(defined: {', '.join(params.variants)})")
        spec = params.variants[variant]
        if params.tune.use == "tuned":
            spec = load_tuned(study_dir(root, dataset, variant) / BEST_FILE, dataset, variant, spec,
                              params.tune.space.get(variant, {}))
        parameters |= {"variant_name": variant, "variant": spec.model_dump(), "tuning": params.tune.use,
                       "seeds": params.distill.seeds, "teacher_dir": teacher_dir}
    if stage == "loihi":
        if dataset not in params.loihi.datasets:
            raise P.ParamsError(f"dataset = {dataset!r}: not in loihi.datasets of {params_file.name} "
                                f"({', '.join(params.loihi.datasets)})")
        name = params.loihi.variant
        nir_student = student_path(root, dataset, name, params.distill.seeds[0])
        parameters |= {"variant_name": name, "variant": params.variants[name].model_dump(),
                       "teacher_dir": teacher_dir, "nir_student": str(nir_student), "students_dir": students_dir}
    if stage == "spikes":
        parameters |= {"teacher_dir": teacher_dir, "students_dir": students_dir}
    return out_dir, parameters


QUICK_ROOT = P.PARAMS_FILE.parent / "quick"  # the quick runs' own workbook folder (git- and DVC-ignored)


def quick_parameters(stage: str) -> dict:
    """What a stage notebook run by hand uses: the parameters of ``params.quick.yaml``'s first dataset (and,
    for ``distill``, its last variant), reading and writing under ``quick/results/``.

    Every notebook's ``parameters`` cell calls this; the pipeline's injected values then replace them all.
    A distill run takes the quick study's tuned values if ``python -m kdlib.stages.tune`` has run there, else the
    hand-set ones. A loihi run finds the quick distillation's student if that has run, else builds a fresh one. The
    report is the exception: run by hand it reads the study's own results and ``params.yaml`` (what a
    reader opening it wants to see) and writes its tables under ``quick/results/report/``.
    """
    if stage == "report":  # the study's contract, but its tables go under quick/
        _, parameters = stage_parameters(stage, None, P.load(), params_file=P.PARAMS_FILE, root=P.PARAMS_FILE.parent)
        return parameters | {"out_dir": str(results_dir("report", [], QUICK_ROOT))}
    params = P.quick()
    dataset = params.data.datasets[0]
    variant = params.distill.variants[-1] if stage == "distill" else None
    if variant is not None and not (study_dir(QUICK_ROOT, dataset, variant) / BEST_FILE).is_file():
        params = params.model_copy(update={"tune": params.tune.model_copy(update={"use": "hand-set"})})
    _, parameters = stage_parameters(stage, dataset, params, params_file=P.QUICK_FILE, root=QUICK_ROOT,
                                     variant=variant)
    if stage == "loihi" and not Path(parameters["nir_student"]).is_file():
        parameters["nir_student"] = None
    return parameters


def run(stage: str, dataset: str | None, *, params_file: Path, root: Path, variant: str | None = None) -> Path:
    """Execute ``stage`` for ``dataset`` (and, for students, ``variant``); return the executed notebook."""
    out_dir, parameters = stage_parameters(stage, dataset, P.load(params_file), params_file=params_file, root=root,
                                           variant=variant)
    return _execute(STAGES[stage], parameters, out_dir, root)


def _execute(spec: Stage, parameters: dict, out_dir: Path, root: Path) -> Path:
    """Run the notebook with papermill into ``out_dir/notebook.ipynb``, atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / NOTEBOOK_FILE
    failed = executed.with_suffix(".failed.ipynb")
    for leftover in (failed, *out_dir.glob(".partial-*")):  # from an earlier failed or killed run
        leftover.unlink(missing_ok=True)
    with atomic_path(executed) as tmp, tempfile.TemporaryDirectory(prefix="kdlib-kernel-") as sockets:
        try:
            papermill.execute_notebook(
                str(root / spec.notebook), str(tmp), parameters=parameters, kernel_name="python3",
                cwd=str(root / Path(spec.notebook).parent), progress_bar=False, log_output=True,
                config=_private_sockets(Path(sockets)),
            )
        except BaseException:
            if tmp.exists():
                os.replace(tmp, failed)
            raise
        tidy(tmp)
    return executed


def _private_sockets(folder: Path) -> Config:
    """Talk to the kernel over Unix sockets in ``folder`` rather than TCP ports on localhost.

    jupyter_client picks a kernel's five TCP ports by binding to port 0 and letting go, and the kernel
    binds them a second later: stages, workers and test runs that start kernels at the same moment can be
    handed the same port, and a kernel whose port was taken by another one either dies or leaves papermill
    waiting for a reply forever (papermill issue #511). Sockets in a private folder cannot collide."""
    return Config({"KernelManager": {"transport": "ipc", "ip": str(folder / "kernel")}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.stages.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", help=f"one of {', '.join(STAGES)}")
    parser.add_argument("dataset", nargs="?", help="a dataset listed in data.datasets (per-dataset stages)")
    parser.add_argument("--variant", help="distill: a variant defined under variants")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workbook folder (default: here)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        run(args.stage, args.dataset, params_file=root / "params.yaml", root=root, variant=args.variant)
    except P.ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except papermill.PapermillExecutionError as err:
        print(f"error: the {args.stage} notebook failed: {err.ename}: {err.evalue}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
