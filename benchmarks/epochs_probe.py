"""What longer training buys: a variant's student at its tuned values, trained for more epochs, on validation.

    uv run python benchmarks/epochs_probe.py                                  # the defaults below
    uv run python benchmarks/epochs_probe.py --runs mnist:hetero_kd --epochs 6 12 --seeds 0

The study trains every student for ``student.epochs`` (6). The fair-comparison issue asks for a best student of
98.8 % on MNIST and 89.8 % on Fashion-MNIST; this probe measures how much of the gap more epochs close, and at
what cost, without touching the test split: each (dataset, variant, epochs, seed) trains the variant exactly as
the distillation stage does (its study's values when ``tune.use`` is ``tuned``, the cosine schedule stretched
over the epochs) and reports its best validation accuracy and the hidden spikes per validation image. The run
at ``student.epochs`` reproduces the stage's own validation accuracy for that seed.

Writes ``benchmarks/epochs_probe.json`` (one row per run; ``seconds``: the run's wall time on one thread, beside
other runs on the other cores). Needs ``results/teacher/`` and, with ``tune.use: tuned``, ``results/tune/``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from kdlib.core import params as P
from kdlib.kd.trial import train_trial, write_teacher_targets
from kdlib.stages.front import trained_variant
from kdlib.stages.workers import parallel_workers, start_workers

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=["mnist:hetero_kd", "fashion-mnist:joint_kd"],
                        help="dataset:variant pairs (default: each dataset's most accurate student in the final run)")
    parser.add_argument("--epochs", nargs="+", type=int, default=[6, 12, 24, 48])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "epochs_probe.json")
    args = parser.parse_args()

    params = P.load(ROOT / "params.yaml")
    context = start_workers()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kdlib-probe-") as folder:
        jobs = []
        for run in args.runs:
            dataset, name = run.split(":")
            spec = trained_variant(params, ROOT, dataset, name)
            base = P.student_for(params.student, {"v": spec}, "v", dataset)
            teacher = ROOT / "results" / "teacher" / dataset / "teacher.pt"
            targets = write_teacher_targets(dataset, params.data, base, spec, teacher,
                                            Path(folder) / f"{dataset}-{name}.pt")
            for epochs in args.epochs:
                for seed in args.seeds:
                    cfg = base.model_copy(update={"epochs": epochs})
                    jobs.append(((dataset, name, epochs, seed),
                                 (dataset, params.data, cfg, spec, seed), {"teacher_path": teacher,
                                                                          "targets_path": targets}))
        jobs.sort(key=lambda job: -job[0][2])  # longest first: the pool ends together
        with ProcessPoolExecutor(parallel_workers(len(jobs)), mp_context=context) as pool:
            futures = [(key, pool.submit(train_trial, *a, **kw)) for key, a, kw in jobs]
            for (dataset, name, epochs, seed), future in futures:
                result = future.result()
                rows.append({"dataset": dataset, "variant": name, "epochs": epochs, "seed": seed,
                             "val_accuracy": result.val_accuracy, "spikes_per_image": result.spikes_per_image,
                             "seconds": round(result.seconds, 1), "diverged": result.diverged or None})
                print(rows[-1], flush=True)
    rows.sort(key=lambda r: (r["dataset"], r["variant"], r["epochs"], r["seed"]))
    args.out.write_text(json.dumps({"tune_use": params.tune.use, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
