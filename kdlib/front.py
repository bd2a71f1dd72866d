"""Stage ``front``: KD's spike–accuracy front over the two temperatures, and Lee et al.'s claim at matched accuracy.

::

    python -m kdlib.front mnist        # the pipeline's command (dvc.yaml's front stage)

"Energy-efficient knowledge distillation for spiking neural networks" (Lee et al., 2021) reports that a
student temperature below the teacher's cuts the student's spikes by 65 % at +0.09 points of accuracy. One
pair of temperatures cannot test that: a different pair may trade accuracy for spikes. So KD's student (the
entry ``variants.kd``, with the values its study chose when ``tune.use`` is ``tuned``) is trained at every pair
(τ_T, τ_S) of ``front.tau_teacher`` × ``front.tau_student`` with τ_S ≤ τ_T, from ``front.seed``, for the
study's epochs, and scored on the validation split (the test split is not read): its accuracy and its
hidden spikes per image. τ_S = τ_T is plain KD, τ_S < τ_T heterogeneous KD.

:func:`matched` then answers the claim at matched accuracy: against the best plain-KD point, the
heterogeneous point with the fewest spikes whose accuracy is within ``front.match`` of it, and its saving.
The stage writes ``front.csv`` (one row per pair) and ``metrics.json`` (the matched comparison).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from kdlib import params as P
from kdlib.io import write_csv, write_json
from kdlib.pipeline import BEST_FILE, load_tuned, results_dir, study_dir

PAPER_SAVING, PAPER_GAIN = 0.65, 0.0009  # Lee et al.: 65 % fewer spikes at +0.09 points


def pairs(cfg: P.FrontParams) -> list[tuple[float, float]]:
    """The (τ_T, τ_S) pairs of the front: every τ_S ≤ τ_T, in the order of the lists."""
    return [(t, s) for t in cfg.tau_teacher for s in cfg.tau_student if s <= t]


def kd_variant(params: P.Params, root: Path, dataset: str) -> P.VariantParams:
    """KD's entry as the distillation stage trains it: with its study's values when ``tune.use`` is ``tuned``."""
    spec = params.variants["kd"]
    if params.tune.use == "tuned":
        spec = load_tuned(study_dir(root, dataset, "kd") / BEST_FILE, dataset, "kd", spec,
                          params.tune.space.get("kd", {}))
    return spec


def run(dataset: str, params: P.Params, root: Path) -> pd.DataFrame:
    """Train and score KD's student at every pair of :func:`pairs`; return one row per pair."""
    from kdlib.jobs import parallel_workers, start_workers, write_teacher_targets
    from kdlib.tune import train_trial

    base = kd_variant(params, root, dataset)
    student = P.student_for(params.student, {"kd": base}, "kd", dataset)
    teacher_path = root / "results" / "teacher" / dataset / "teacher.pt"
    grid = pairs(params.front)
    specs = [base.model_copy(update={"tau_teacher": t, "tau_student": s}) for t, s in grid]
    context = start_workers()
    with tempfile.TemporaryDirectory(prefix="kdlib-targets-") as folder:
        targets = write_teacher_targets(dataset, params.data, student, base, teacher_path,
                                        Path(folder) / "targets.pt")
        with ProcessPoolExecutor(parallel_workers(len(specs)), mp_context=context) as pool:
            futures = [pool.submit(train_trial, dataset, params.data, student, spec, params.front.seed,
                                   teacher_path=teacher_path, targets_path=targets) for spec in specs]
            results = [f.result() for f in futures]
    rows = []
    for (t, s), result in zip(grid, results, strict=True):
        if result.diverged:
            raise RuntimeError(f"front on {dataset}: tau_teacher = {t}, tau_student = {s}: {result.diverged}")
        rows.append({"tau_teacher": t, "tau_student": s, "kind": "kd" if s == t else "hetero_kd",
                     "val_accuracy": result.val_accuracy, "spikes_per_image": result.spikes_per_image,
                     "epochs": result.epochs, "seconds": round(result.seconds, 1)})
    return pd.DataFrame(rows)


def matched(front: pd.DataFrame, match: float) -> dict[str, Any]:
    """Lee et al.'s claim at matched accuracy on a front (:func:`run`'s table).

    The reference is the plain-KD point (τ_S = τ_T) with the best validation accuracy; the matched point is the
    heterogeneous one (τ_S < τ_T) with the fewest spikes among those within ``match`` of the reference's
    accuracy (None where none is). ``saving`` is its fraction of the reference's spikes saved, ``reaches_half``
    whether it is at least 50 %; ``largest_saving`` is the most any heterogeneous point saves, at any accuracy,
    with its accuracy difference; ``paper`` whether any point saves 65 % without losing accuracy (+0.09 points).
    """
    plain, hetero = front[front.kind == "kd"], front[front.kind == "hetero_kd"]
    if plain.empty or hetero.empty:
        raise ValueError("the front needs plain-KD (tau_student = tau_teacher) and heterogeneous points")
    ref = plain.loc[plain.val_accuracy.idxmax()]

    def point(row: pd.Series) -> dict[str, float]:
        return {"tau_teacher": float(row.tau_teacher), "tau_student": float(row.tau_student),
                "val_accuracy": float(row.val_accuracy), "spikes_per_image": float(row.spikes_per_image),
                "saving": 1 - float(row.spikes_per_image) / float(ref.spikes_per_image),
                "accuracy_difference": float(row.val_accuracy - ref.val_accuracy)}

    close = hetero[hetero.val_accuracy >= ref.val_accuracy - match]
    best = point(close.loc[close.spikes_per_image.idxmin()]) if not close.empty else None
    most = point(hetero.loc[hetero.spikes_per_image.idxmin()])
    paper = bool(((1 - hetero.spikes_per_image / ref.spikes_per_image >= PAPER_SAVING)
                  & (hetero.val_accuracy >= ref.val_accuracy)).any())
    return {"reference": point(ref), "match": match, "matched": best,
            "saving": best["saving"] if best else None, "reaches_half": bool(best and best["saving"] >= 0.5),
            "largest_saving": most, "paper_claim_reached": paper}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.front", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a dataset listed in data.datasets")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workbook folder (default: here)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        params = P.load(root / "params.yaml")
        if args.dataset not in params.data.datasets:
            raise P.ParamsError(f"dataset = {args.dataset!r}: not in data.datasets ({', '.join(params.data.datasets)})")
        front = run(args.dataset, params, root)
    except P.ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = results_dir("front", [args.dataset], root)
    result = matched(front, params.front.match)
    write_csv(out / "front.csv", front)
    write_json(out / "metrics.json", {"dataset": args.dataset, **result})
    print(front.to_string(index=False))
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
