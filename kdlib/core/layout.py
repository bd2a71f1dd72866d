"""Where the stages write and read: the one description of the ``results/`` tree.

::

    results/teacher/<dataset>/          teacher.pt, metrics.json, history.csv, notebook.ipynb
    results/tune/<dataset>/<variant>/   best.json, trials.csv, study.journal
    results/front/<dataset>/            front.csv, metrics.json
    results/distill/<dataset>/<variant>/students/seed<N>.pt, metrics.json, history.csv, notebook.ipynb
    results/spikes/<dataset>/           metrics.json, *.csv, notebook.ipynb
    results/loihi/<dataset>/            metrics.json, deployed.csv, per_image.csv, models/, student.nir, notebook.ipynb
    results/report/                     headline.json, claims.csv, comparisons.csv, energy_flips.csv, students.csv

``root`` is always the workbook folder (the one holding ``params.yaml``); every function only builds paths,
except :func:`seed_checkpoints` (it lists what exists) and :func:`load_tuned` (it reads a study's best values).
``dvc.yaml`` names the same paths for DVC; a test holds the two together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdlib.core import params as P

RESULTS = "results"
METRICS_FILE = "metrics.json"  # every stage run's metrics (a DVC metrics file)
NOTEBOOK_FILE = "notebook.ipynb"  # the executed notebook of a stage run
HISTORY_FILE = "history.csv"  # per-epoch training history (teacher, distill)
TEACHER_FILE = "teacher.pt"
BEST_FILE = "best.json"  # a study's best values, what distill trains with when tune.use is tuned
TRIALS_FILE = "trials.csv"  # every finished trial of a study
JOURNAL_FILE = "study.journal"  # a study's Optuna journal, from which an interrupted study resumes
FRONT_FILE = "front.csv"  # the front stage's points
DEPLOYED_FILE = "deployed.csv"  # the Loihi stage's table of deployed students
COMPARISONS_FILE = "comparisons.csv"  # the report's paired comparisons of every variant with scratch and kd
FLIPS_FILE = "energy_flips.csv"  # the report's energy verdicts per convention
CLAIMS_FILE = "claims.csv"  # the report's verdicts on the papers' claims
HEADLINE_FILE = "headline.json"  # the report's headline figures


def results_root(root: Path) -> Path:
    """The results tree of the workbook folder ``root``."""
    return Path(root) / RESULTS


def run_key(dataset: str, variant: str | None = None) -> list[str]:
    """The parts that name one run of a stage: the dataset, and for students the variant."""
    return [dataset] if variant is None else [dataset, variant]


def results_dir(stage: str, key: list[str], root: Path) -> Path:
    """Where a stage writes its artefacts for one run (``key``: :func:`run_key`; empty for the report)."""
    return results_root(root).joinpath(stage, *key)


def teacher_path(root: Path, dataset: str) -> Path:
    """The teacher checkpoint of ``dataset``."""
    return results_dir("teacher", [dataset], root) / TEACHER_FILE


def study_dir(root: Path, dataset: str, variant: str) -> Path:
    """Where the tuning study of ``variant`` on ``dataset`` keeps its storage and results."""
    return results_dir("tune", [dataset, variant], root)


def seed_checkpoint(run_dir: str | Path, seed: int) -> Path:
    """Where a distillation run (the directory of one dataset and variant) keeps its student of ``seed``."""
    return Path(run_dir) / "students" / f"seed{seed}.pt"


def student_path(root: Path, dataset: str, variant: str, seed: int) -> Path:
    """Where the distillation stage writes the student of ``variant`` trained from ``seed``."""
    return seed_checkpoint(results_dir("distill", run_key(dataset, variant), root), seed)


def seed_checkpoints(dataset_dir: str | Path) -> list[tuple[str, int, Path]]:
    """Every student checkpoint under a dataset's distillation directory, as (variant, seed, path), sorted."""
    found = []
    for path in Path(dataset_dir).glob("*/students/seed*.pt"):
        seed = path.stem.removeprefix("seed")
        if seed.isdigit():
            found.append((path.parent.parent.name, int(seed), path))
    return sorted(found)


def stage_files(root: Path, stage: str, name: str) -> list[Path]:
    """Every file called ``name`` under a stage's results (``results/<stage>/**/<name>``), sorted."""
    return sorted(results_dir(stage, [], root).rglob(name))


def load_tuned(path: Path, dataset: str, variant_name: str, variant: P.VariantParams,
               space: dict[str, list[Any]]) -> P.VariantParams:
    """The variant entry with the values of a study's ``best.json``, after checking that the file is the study of
    this dataset and variant over this search space; a :class:`kdlib.core.params.ParamsError` says what to do
    else."""
    rerun = f"run `dvc repro tune@{dataset}-{variant_name}`, or set tune.use: hand-set"
    if not path.is_file():
        raise P.ParamsError(f"{path}: missing; the variant {variant_name!r} has not been tuned on {dataset}: {rerun}")
    try:
        entry = json.loads(path.read_text())
        found = (entry["dataset"], entry["variant"], entry["space"])
        values = entry["values"]
    except (ValueError, KeyError, TypeError) as err:
        raise P.ParamsError(f"{path}: unreadable ({type(err).__name__}: {err}); {rerun}") from None
    if found != (dataset, variant_name, space):
        raise P.ParamsError(f"{path}: holds the study of {found[1]!r} on {found[0]} over {found[2]}, not of "
                            f"{variant_name!r} on {dataset} over tune.space.{variant_name} = {space}; {rerun}")
    try:
        return P.apply_tuned(variant, values)
    except (KeyError, ValueError) as err:
        raise P.ParamsError(f"{path}: values {values} do not fit variant {variant_name!r} ({err}); {rerun}") from None
