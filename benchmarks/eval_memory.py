"""Peak memory of evaluating a student as the test set grows: evaluation streams in bounded chunks.

    uv run python benchmarks/eval_memory.py [--sizes 1000 10000 50000]

For each size, a fresh process builds the default student of ``params.yaml``, makes a test split of that
many real MNIST digits (mnist-5k's images repeated as needed), records its resident memory after the data
is in memory, evaluates the student over the split (logits, spikes and synaptic operations, as the
distillation notebook does) and reports how much the peak resident memory grew during the evaluation.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: int) -> dict:
    import torch

    from kdlib import params as P
    from kdlib.data import Split, load_dataset
    from kdlib.students import build_student
    from kdlib.train import evaluate_student

    cfg = P.load(ROOT / "params.yaml").student
    pool = load_dataset("mnist-5k").test
    reps = -(-size // len(pool))
    split = Split(pool.x.repeat(reps, 1, 1, 1)[:size].clone(), pool.y.repeat(reps)[:size].clone())
    net = build_student(cfg)
    before = _peak_mib()
    ev = evaluate_student(net, split, cfg, device=torch.device("cpu"))
    return {"images": size, "peak_before_mib": before, "peak_after_mib": _peak_mib(),
            "evaluation_growth_mib": _peak_mib() - before, "accuracy": ev.accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    print("| test images | data in memory (MiB peak before) | growth during evaluation (MiB) |\n|---|---|---|")
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size)], capture_output=True, text=True,
                             check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {size:,} | {r['peak_before_mib']:,.0f} | {r['evaluation_growth_mib']:,.1f} |")


if __name__ == "__main__":
    main()
