"""How close to the matmul roofline can the default student get at all? Time only its matrix products.

    uv run python benchmarks/gemm_ceiling.py [--steps 4 8 16] [--repeats 7]
    uv run python benchmarks/gemm_ceiling.py --arch cnn [--channels 16 32] [--hidden 128] --steps 4 8

The roofline of ``train_throughput.py`` divides the dense fp32 rate of one large (2048²) matmul by the
student's training FLOPs. A training step of the student is, besides its neuron updates and the optimiser,
a handful of much smaller products: per layer the forward product, the weight gradient and (but for the
first layer, whose input is the images) the input gradient, on a batch of 128 images, or 128·T rows where
the input changes over time. This script times exactly those products, back to back on preallocated
tensors with nothing else in between, and reports their images per second as a share of the roofline: an
upper bound for any implementation that computes the student's layers as dense products on this machine.

With ``--arch cnn`` the products are the conv student's (:class:`kdlib.snn.students.SpikingCNN`): per
convolution PyTorch's forward convolution and its backward (weight gradient, and the input gradient but for
the first convolution), on maps and kernels stored channels last as the student stores them, then the dense
layers' products as above; the stem runs once per image.
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

import train_throughput  # noqa: E402
from train_throughput import _student_cfg, matmul_gflops, student_flops  # noqa: E402


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


def cnn_products(cfg, steps: int, batch: int):  # noqa: ANN001, ANN201
    """Thunks, one per product of one training step of the conv student: convolutions forward and backward
    (PyTorch's ``convolution_backward``: weight and input gradients together), then the dense products."""
    import torch

    from kdlib.snn.students import conv_layers

    thunks, c_in, size = [], 1, 28
    for i, conv in enumerate(conv_layers(list(cfg.channels))):
        out = conv.output_size(size)
        rows = batch if i == 0 else batch * steps
        cl = torch.channels_last  # the student's maps and kernels are stored channels last
        x = torch.randn(rows, c_in, size, size).contiguous(memory_format=cl)
        w = torch.randn(conv.channels, c_in, conv.kernel, conv.kernel).contiguous(memory_format=cl)
        g, pad = torch.randn(rows, conv.channels, out, out).contiguous(memory_format=cl), [conv.kernel // 2] * 2
        thunks.append(lambda x=x, w=w, s=conv.stride, p=pad: torch.nn.functional.conv2d(x, w, None, s, p))
        thunks.append(lambda g=g, x=x, w=w, s=conv.stride, p=pad, first=i == 0: torch.ops.aten.convolution_backward(
            g, x, w, None, [s, s], p, [1, 1], False, [0, 0], 1, [not first, True, False]))
        c_in, size = conv.channels, out
    widths = [c_in * size * size, *cfg.hidden, 10]
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        x, w, g = torch.randn(batch * steps, fan_in), torch.randn(fan_in, fan_out), torch.randn(batch * steps, fan_out)
        thunks += [lambda x=x, w=w: x @ w, lambda x=x, g=g: x.t() @ g, lambda g=g, w=w: g @ w.t()]
    return thunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=50, help="training steps' worth of products per repeat")
    parser.add_argument("--arch", choices=("mlp", "cnn"), help="the student's architecture (default: params.yaml's)")
    parser.add_argument("--channels", type=int, nargs="+", help="cnn: its convolutions' channels")
    parser.add_argument("--hidden", type=int, nargs="+", help="its dense widths (cnn: 128 unless given)")
    args = parser.parse_args()
    train_throughput.set_shape(args.arch, args.channels, args.hidden)

    import torch

    cfg = _student_cfg(4)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {cfg.batch_size}, {cfg.arch} "
          f"{cfg.channels if cfg.arch == 'cnn' else ''} {cfg.hidden}")
    for steps in args.steps:
        if cfg.arch == "cnn":
            thunks = cnn_products(cfg, steps, cfg.batch_size)
        else:
            thunks = [lambda a=a, b=b: a @ b for a, b in student_products(list(cfg.hidden), 10, steps, cfg.batch_size)]
        flops = student_flops(cfg.model_copy(update={"steps": steps}), steps)
        for _ in range(5):
            for product in thunks:
                product()
        rates, ceilings = [], []
        for _ in range(args.repeats):
            gflops = matmul_gflops(repeats=3)
            tic = time.perf_counter()
            for _ in range(args.iters):
                for product in thunks:
                    product()
            rate = args.iters * cfg.batch_size / (time.perf_counter() - tic)
            rates.append(rate)
            ceilings.append(rate / (gflops * 1e9 / flops))
        print(f"T={steps:>3}: products only {statistics.median(rates):8.0f} images/s = "
              f"{statistics.median(ceilings):.0%} of the roofline (median of {args.repeats}; "
              f"range {min(ceilings):.0%} to {max(ceilings):.0%})")


if __name__ == "__main__":
    main()
