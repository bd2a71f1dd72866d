"""How close to the matmul roofline can the default student get at all? Time only its matrix products.

    uv run python benchmarks/gemm_ceiling.py [--steps 4 8 16] [--repeats 7]

The roofline of ``train_throughput.py`` divides the dense fp32 rate of one large (2048²) matmul by the
student's training FLOPs. A training step of the student is, besides its neuron updates and the optimiser,
a handful of much smaller products: per layer the forward product, the weight gradient and (but for the
first layer, whose input is the images) the input gradient, on a batch of 128 images, or 128·T rows where
the input changes over time. This script times exactly those products, back to back on preallocated
tensors with nothing else in between, and reports their images per second as a share of the roofline: an
upper bound for any implementation that computes the student's layers as dense products on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_throughput import _student_cfg, matmul_gflops, training_flops  # noqa: E402


def student_products(widths: list[int], num_classes: int, steps: int, batch: int):
    """The (m, k) @ (k, n) operand pairs of one training step of the MLP student with direct input."""
    import torch

    pairs = []
    for i, (fan_in, fan_out) in enumerate(zip([784, *widths], [*widths, num_classes], strict=True)):
        rows = batch if i == 0 else batch * steps  # the first layer sees the constant image once
        x, w, g = torch.randn(rows, fan_in), torch.randn(fan_in, fan_out), torch.randn(rows, fan_out)
        pairs.append((x, w))  # forward
        pairs.append((x.t(), g))  # weight gradient
        if i > 0:
            pairs.append((g, w.t()))  # input gradient
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=50, help="training steps' worth of products per repeat")
    args = parser.parse_args()

    import torch

    cfg = _student_cfg(4)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {cfg.batch_size}")
    for steps in args.steps:
        pairs = student_products(list(cfg.hidden), 10, steps, cfg.batch_size)
        flops = training_flops(list(cfg.hidden), 10, steps, constant_input=True)
        for _ in range(5):
            for a, b in pairs:
                a @ b
        rates, ceilings = [], []
        for _ in range(args.repeats):
            gflops = matmul_gflops(repeats=3)
            tic = time.perf_counter()
            for _ in range(args.iters):
                for a, b in pairs:
                    a @ b
            rate = args.iters * cfg.batch_size / (time.perf_counter() - tic)
            rates.append(rate)
            ceilings.append(rate / (gflops * 1e9 / flops))
        print(f"T={steps:>3}: products only {statistics.median(rates):8.0f} images/s = "
              f"{statistics.median(ceilings):.0%} of the roofline (median of {args.repeats}; "
              f"range {min(ceilings):.0%} to {max(ceilings):.0%})")


if __name__ == "__main__":
    main()
