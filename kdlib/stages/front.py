"""Stage ``front``: the spike–accuracy fronts of KD over both temperatures and of a firing-rate penalty, and Lee
et al.'s claim tested at matched accuracy.

::

    python -m kdlib.stages.front mnist        # the pipeline's command (dvc.yaml's front stage)

"Energy-efficient knowledge distillation for spiking neural networks" (Lee et al., 2021) reports that a
student temperature below the teacher's cuts the student's spikes by 65 % at +0.09 points of accuracy. One
pair of temperatures cannot test that: another pair may trade accuracy for spikes, and a low student
temperature may save spikes without any heterogeneity. So KD's student (the entry ``variants.kd``, with the α
and learning rate its study chose when ``tune.use`` is ``tuned``) is trained at every pair (τ_T, τ_S) of
``front.taus`` with τ_S ≤ τ_T: plain KD (τ_S = τ_T) at every temperature and heterogeneous KD (τ_S < τ_T).
Beside it, the ``rate_reg`` student (cross-entropy + λ·mean firing rate, its tuned learning rate) at every λ of
``front.rate_lambdas``: the plain way to fewer spikes. Each point is trained from ``front.seed`` for
``student.epochs`` and scored on the validation split (the test split is not read): accuracy and hidden spikes
per image.

:func:`matched` then compares at matched accuracy, against plain KD's most accurate point: the fewest spikes of
a heterogeneous pair, of a plain pair and of a rate penalty within ``front.match`` of its accuracy. The stage
writes ``front.csv`` (one row per point) and ``metrics.json`` (the comparisons).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from kdlib.core import params as P
from kdlib.core.io import write_csv, write_json
from kdlib.core.layout import BEST_FILE, FRONT_FILE, METRICS_FILE, load_tuned, results_dir, study_dir, teacher_path

PAPER_SAVING = 0.65  # Lee et al.: 65 % fewer spikes than KD, at +0.09 points


def pairs(cfg: P.FrontParams) -> list[tuple[float, float]]:
    """The (τ_T, τ_S) pairs of KD's front: every τ_S ≤ τ_T of ``front.taus``, by τ_T then τ_S."""
    taus = sorted(set(cfg.taus))
    return [(t, s) for t in taus for s in taus if s <= t]


def trained_variant(params: P.Params, root: Path, dataset: str, name: str) -> P.VariantParams:
    """A variant's entry as the distillation stage trains it: with its study's values when ``tune.use`` is ``tuned``."""
    spec = params.variants[name]
    if params.tune.use == "tuned":
        spec = load_tuned(study_dir(root, dataset, name) / BEST_FILE, dataset, name, spec,
                          params.tune.space.get(name, {}))
    return spec


def points(params: P.Params, root: Path, dataset: str) -> list[tuple[str, dict[str, float], P.VariantParams]]:
    """Every point of the fronts: (kind, its coordinates, the variant entry it trains)."""
    kd = trained_variant(params, root, dataset, "kd")
    out = [("kd" if s == t else "hetero_kd", {"tau_teacher": t, "tau_student": s},
            kd.model_copy(update={"tau_teacher": t, "tau_student": s})) for t, s in pairs(params.front)]
    if params.front.rate_lambdas:
        rate = trained_variant(params, root, dataset, "rate_reg")
        out += [("rate_reg", {"rate_lambda": lam}, rate.model_copy(update={"rate_lambda": lam}))
                for lam in params.front.rate_lambdas]
    return out


def run(dataset: str, params: P.Params, root: Path) -> pd.DataFrame:
    """Train and score every point of :func:`points`; return one row per point."""
    from kdlib.kd.trial import train_trial, write_teacher_targets
    from kdlib.stages.workers import parallel_workers, start_workers

    grid = points(params, root, dataset)
    teacher = teacher_path(root, dataset)
    students = [P.student_for(params.student, {"v": spec}, "v", dataset) for _, _, spec in grid]
    context = start_workers()
    with tempfile.TemporaryDirectory(prefix="kdlib-targets-") as folder:
        # in a process of its own, which returns the dataset's and the teacher pass's memory when it ends:
        # kept here, it stayed beside the trial workers for the whole stage (the stage's peak memory in use on
        # the machine went from 4,481 to 2,971 MiB on Fashion-MNIST, benchmarks/pipeline_times.front.json)
        with ProcessPoolExecutor(1, mp_context=context) as one:
            targets = one.submit(write_teacher_targets, dataset, params.data, students[0], grid[0][2],
                                 teacher, Path(folder) / "targets.pt").result()
        with ProcessPoolExecutor(parallel_workers(len(grid)), mp_context=context) as pool:
            futures = [pool.submit(train_trial, dataset, params.data, student, spec, params.front.seed,
                                   teacher_path=teacher, targets_path=targets if kind != "rate_reg" else None)
                       for (kind, _, spec), student in zip(grid, students, strict=True)]
            results = [f.result() for f in futures]
    rows = []
    for (kind, where, _), result in zip(grid, results, strict=True):
        if result.diverged:
            raise RuntimeError(f"front on {dataset}: {kind} at {where}: {result.diverged}")
        rows.append({"kind": kind, "tau_teacher": where.get("tau_teacher"), "tau_student": where.get("tau_student"),
                     "rate_lambda": where.get("rate_lambda"), "val_accuracy": result.val_accuracy,
                     "spikes_per_image": result.spikes_per_image, "epochs": result.epochs,
                     "seconds": round(result.seconds, 1)})
    return pd.DataFrame(rows)


def matched(front: pd.DataFrame, match: float) -> dict[str, Any]:
    """The comparisons at matched accuracy on the fronts (:func:`run`'s table).

    The reference is plain KD's most accurate point. ``hetero``, ``plain`` and ``rate`` are the points with the
    fewest spikes among the heterogeneous pairs, the plain pairs and the rate penalties whose accuracy is within
    ``match`` of the reference's (None where there is none), each with its ``saving``, the fraction of the
    reference's spikes it saves. ``saving`` is the heterogeneous one (Lee et al.'s comparison, against KD);
    ``over_plain`` what heterogeneity saves beyond the fewest spikes plain KD reaches at a lower temperature, and
    ``over_rate`` beyond a rate penalty, both at matched accuracy. ``largest_saving`` is the heterogeneous pair
    that saves most at any accuracy. ``paper`` is Lee et al.'s claim: ``reproduced`` if a heterogeneous pair within
    ``match`` saves 65 %, ``refuted`` if none saves 65 % at any accuracy, ``inconclusive`` otherwise.
    """
    plain, hetero = front[front.kind == "kd"], front[front.kind == "hetero_kd"]
    if plain.empty or hetero.empty:
        raise ValueError("the front needs plain-KD (tau_student = tau_teacher) and heterogeneous points")
    ref = plain.loc[plain.val_accuracy.idxmax()]

    def point(row: pd.Series) -> dict[str, Any]:
        keys = ("tau_teacher", "tau_student") if row.kind != "rate_reg" else ("rate_lambda",)
        return {**{k: float(row[k]) for k in keys}, "val_accuracy": float(row.val_accuracy),
                "spikes_per_image": float(row.spikes_per_image),
                "saving": 1 - float(row.spikes_per_image) / float(ref.spikes_per_image),
                "accuracy_difference": float(row.val_accuracy - ref.val_accuracy)}

    def fewest(rows: pd.DataFrame) -> dict[str, Any] | None:
        close = rows[rows.val_accuracy >= ref.val_accuracy - match]
        return point(close.loc[close.spikes_per_image.idxmin()]) if not close.empty else None

    best_hetero, best_plain = fewest(hetero), fewest(plain)
    best_rate = fewest(front[front.kind == "rate_reg"])

    def beyond(other: dict[str, Any] | None) -> float | None:
        if best_hetero is None or other is None:
            return None
        return 1 - best_hetero["spikes_per_image"] / other["spikes_per_image"]

    most = point(hetero.loc[hetero.spikes_per_image.idxmin()])
    paper = ("reproduced" if best_hetero and best_hetero["saving"] >= PAPER_SAVING
             else "refuted" if most["saving"] < PAPER_SAVING else "inconclusive")
    return {"reference": point(ref), "match": match, "hetero": best_hetero, "plain": best_plain, "rate": best_rate,
            "saving": best_hetero["saving"] if best_hetero else None,
            "reaches_half": bool(best_hetero and best_hetero["saving"] >= 0.5),
            "over_plain": beyond(best_plain), "over_rate": beyond(best_rate), "largest_saving": most, "paper": paper}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.stages.front", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a dataset listed in data.datasets")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workbook folder (default: here)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        params = P.load(root / "params.yaml")
        P.check_dataset(params, args.dataset)
        front = run(args.dataset, params, root)
    except P.ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = results_dir("front", [args.dataset], root)
    result = matched(front, params.front.match)
    write_csv(out / FRONT_FILE, front)
    write_json(out / METRICS_FILE, {"dataset": args.dataset, **result})
    print(front.to_string(index=False))
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
