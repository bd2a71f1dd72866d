"""Record in ``dvc.lock`` a change of code that changes no output, where ``dvc commit`` cannot run.

    uv run python benchmarks/compare_runs.py REV     # first: the rerun stages' outputs equal REV's
    uv run python benchmarks/relock_code.py          # then: every stage's code deps and command re-hashed

``dvc commit`` records a stage by hashing its outputs too, so it fails on a clone without the DVC cache (a
fresh machine: every ``teacher.pt``, student and executed notebook is missing). This script re-hashes only
each stage's code dependencies (under ``kdlib/`` and ``notebooks/``) and takes its command from ``dvc.yaml``;
data dependencies, parameters and outputs keep the values of the run that produced them. Use it only for a
change shown not to move any output (a move of modules, a refactor checked with ``compare_runs.py`` on the
stages that could be rerun); anything else must be rerun with ``dvc repro``.

``--params KEY ...`` also records the current values of these tracked parameters (a section such as
``student`` or a key such as ``data.val_size``): for a parameter added that no stage's output reads yet
(``student.channels``, read only by conv students), again shown first not to move any output.
"""

from __future__ import annotations

import argparse

from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

CODE = ("kdlib/", "notebooks/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", nargs="+", default=[], metavar="KEY",
                        help="tracked parameters whose new values to record as well")
    args = parser.parse_args()
    repo = Repo(".")
    count = 0
    with repo.lock:
        for stage in repo.index.stages:
            if not getattr(stage, "cmd", None):
                continue
            for dep in stage.deps:
                if str(dep.def_path).startswith(CODE):
                    dep.save()
                elif isinstance(dep, ParamsDependency) and set(dep.params) & set(args.params):
                    dep.save()
            stage.dump(update_pipeline=False)
            count += 1
    print(f"{count} stages: code deps and commands recorded in dvc.lock")


if __name__ == "__main__":
    main()
