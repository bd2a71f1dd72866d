"""What a conv student of each width learns in a few epochs, and what an epoch costs: for choosing widths.

    uv run python benchmarks/conv_probe.py [--datasets mnist fashion-mnist] [--channels 16,32 32,64]
                                           [--hidden 128] [--epochs 4] [--seeds 0]

Each (dataset, channels, seed) trains a :class:`kdlib.snn.students.SpikingCNN` from scratch with cross-entropy
exactly as the distillation stage trains a student (``kdlib.kd.distill.distill``: ``params.yaml``'s student
section for T, τ, θ, batch size, learning rate and its cosine schedule, Adam), for ``--epochs``, and scores
it on the validation split after every epoch; the test split is never read. The runs train side by side, one
thread each, as the stage trains its seeds. Writes ``benchmarks/conv_probe.json``: per run the validation
accuracy after each epoch, the seconds per epoch and the hidden spikes per validation image.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_one(dataset: str, channels: list[int], hidden: list[int], epochs: int, seed: int,
              val_size: int | None) -> dict:
    """One conv student trained from scratch on ``dataset``; validation accuracy by epoch (runs in a worker)."""
    import torch

    from kdlib.core import params as P
    from kdlib.core.data import load_dataset
    from kdlib.kd.distill import distill
    from kdlib.kd.losses import build_objective
    from kdlib.measure.analysis import evaluate
    from kdlib.snn.students import build_student

    torch.set_num_threads(1)
    params = P.load(ROOT / "params.yaml")
    cfg = P.student_for(params.student, params.variants, "scratch", dataset).model_copy(
        update={"arch": "cnn", "channels": channels, "hidden": hidden, "epochs": epochs})
    data = load_dataset(dataset, val_size=val_size, split_seed=params.data.split_seed)
    net = build_student(cfg, data.num_classes, seed)
    objective = build_objective(P.CEVariant(loss="ce"), cfg.steps, net.layer_widths(), [])
    tic, stamps = time.perf_counter(), []
    result = distill(net, objective, data, cfg, seed=seed, on_epoch=lambda epoch, acc: stamps.append(
        time.perf_counter()))
    seconds = time.perf_counter() - tic
    ev = evaluate(net.eval(), data.val, cfg.steps, encoding=cfg.encoding)
    return {"dataset": dataset, "channels": channels, "hidden": hidden, "seed": seed, "epochs": epochs,
            "val_accuracy_by_epoch": [h["val_accuracy"] for h in result.history],
            "best_val_accuracy": result.best_val_accuracy, "seconds_per_epoch": round(seconds / epochs, 1),
            "hidden_spikes_per_image": ev.counts.spikes_per_image()["total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--channels", nargs="+", default=["16,32", "32,64"], help="comma-separated per student")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=3, help="students trained at once, one thread each")
    parser.add_argument("--val-size", type=int, help="validation images (default: params.yaml's data.val_size)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "conv_probe.json")
    args = parser.parse_args()
    from kdlib.core import params as P

    val_size = args.val_size or P.load(ROOT / "params.yaml").data.val_size
    jobs = [(d, [int(c) for c in ch.split(",")], args.hidden, args.epochs, s, val_size)
            for d in args.datasets for ch in args.channels for s in args.seeds]
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(train_one, *zip(*jobs, strict=True)):
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps({"workers": args.workers, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
