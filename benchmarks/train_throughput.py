"""Training throughput of an SNN student against a straightforward loop, peer libraries and the machine's
roofline, measured in one run on one machine.

    uv run python benchmarks/train_throughput.py [--steps 4 8 16] [--rounds 3]
    uv run python benchmarks/train_throughput.py --arch cnn [--channels 16 32] [--hidden 128] --steps 4 8
    uv run python benchmarks/train_throughput.py --table [--arch cnn]   # the performance page's tables

Every measurement runs in a fresh subprocess (so that its peak memory is its own): it trains the
student of ``params.yaml`` (or the shape given by ``--arch``, ``--channels``, ``--hidden``) on batches of
real MNIST digits (mnist-5k) for a fixed number of optimiser steps, ``--repeats`` times, and measures the
dense matmul rate right before each timed repeat. The implementations take turns, ``--rounds`` times, so
that a host whose speed drifts during the run slows all of them alike; each reports the median over all
its repeats. Results go to ``benchmarks/results.json`` (mlp) or ``benchmarks/results.cnn.json`` (cnn).

Implementations, all the same network (for ``mlp`` 784-H-…-10; for ``cnn`` the layers of
:class:`kdlib.snn.students.SpikingCNN`: strided convolutions, batch norm, LIF with reset to zero,
rate-decoded readout), the same batch size and the same T:

``kdlib``      the workbook's student: batched synaptic input over time, the LIF sequence in one call (the
               compiled kernel of ``kdlib.snn.native`` on the CPU)
``eager``      the same student with the kernel turned off (``KDLIB_NATIVE=0``): its LIF sequence as the
               eager PyTorch loop that GPUs and machines without a C compiler run
``loop``       (mlp) the straightforward way: norse ``LIFBoxCell`` modules and the Linear layers called once
               per time step
``pooled``     (cnn) the conv student kdlib had before: 3×3 convolutions with stride 1, each followed by LIF
               neurons and 2×2 average pooling, the same dense layer and readout, on kdlib's LIF kernel
``snntorch``   the same network in snnTorch (``snn.Leaky``, reset to zero), the peer library, every layer
               called once per step (for ``cnn`` the first convolution once: the input is constant)
``spikingjelly`` the same network in SpikingJelly 2.0, the peer most used for multi-step training: its
               multi-step ``LIFNode`` (``step_mode="m"``, hard reset to zero, ``decay_input``: the student's
               v' = v + (I − v)/τ) on the whole (T, B, ...) current, which SpikingJelly runs with its own
               CPU implementation, and the later layers applied to all steps at once
               (``layer.SeqToANNContainer``), the layout kdlib uses too; the first layer once per image.
               Its surrogate gradient is ``Sigmoid`` in the mlp rows (as measured before) and
               ``SuperSpike``, kdlib's, in the cnn rows
``seeds``      the workbook's student as the distillation stage trains it on a CPU: one student per seed of
               ``params.yaml`` (at most cores + 1 at once, :func:`kdlib.stages.workers.parallel_workers`), each in its
               own process on one thread, all at the same time; its rate is the sum of theirs, repeat by repeat
``floor``      not a neuron model but a bound: the workbook's student with every layer of neurons replaced by
               one copy of its input forward and one copy of its gradient backward, as cheap as a neuron can
               be (it must read its current and write its spikes, and the same backward). What is left is
               the products, batch norm, the optimiser and PyTorch's own work per step (autograd, dispatch,
               bias and loss gradients), which no faster neuron can remove.
``seeds-floor`` the same bound for ``seeds``: ``floor`` students trained side by side, one per seed
``seeds-snntorch``, ``seeds-spikingjelly`` the peers trained the way ``seeds`` is: as many side by side, one
               thread each, so that the peers are also compared in the stage's own way of training (a peer's
               neuron on one thread, against kdlib's kernel on one thread)

The roofline is the dense fp32 matmul rate measured in the same process as the student's training,
divided by the student's floating-point work per training image (forward products, and in the backward
pass the weight gradients plus the input gradients of every layer but the first; a convolution's products
counted as C_in·k²·C_out multiply-adds per output position, :func:`product_flops`). Every implementation
is held to the same roofline, the whole machine's as measured by ``kdlib``'s runs; the memory of
``seeds`` and ``seeds-floor`` is the sum of their workers' peaks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PEERS = ("eager", "loop", "pooled", "snntorch", "spikingjelly")
# the implementations trained side by side, one per seed worker on one thread: what each of them trains
SIDE_BY_SIDE = {"seeds": "kdlib", "seeds-floor": "floor", "seeds-snntorch": "snntorch",
                "seeds-spikingjelly": "spikingjelly"}


def matmul_gflops(n: int = 2048, repeats: int = 7) -> float:
    """Median dense fp32 matmul rate (GFLOP/s) on all threads torch uses."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def training_flops(widths: list[int], num_classes: int, steps: int, constant_input: bool) -> float:
    """FLOPs per training image of the dense layers of an MLP student over ``steps`` time steps."""
    return product_flops([(fan_in, fan_out, 1) for fan_in, fan_out in zip([784, *widths], [*widths, num_classes],
                                                                           strict=True)], steps, constant_input)


def product_flops(products: list[tuple[int, int, int]], steps: int, constant_input: bool) -> float:
    """FLOPs per training image of a student given as its layers' products, ``(fan_in, fan_out, positions)``
    each: a dense layer is (inputs, outputs, 1), a k×k convolution (C_in·k², C_out, H_out·W_out). Forward,
    weight gradient, and the input gradient of every layer but the first (the images need none); the first
    layer runs once per image when its input is constant, every later one at every step."""
    flops = 0.0
    for i, (fan_in, fan_out, positions) in enumerate(products):
        macs = fan_in * fan_out * positions * (1 if (i == 0 and constant_input) else steps)
        flops += 2 * macs * (2 if i == 0 else 3)
    return flops


def cnn_products(channels: list[int], hidden: list[int], num_classes: int = 10) -> list[tuple[int, int, int]]:
    """The products of the conv student (:func:`kdlib.snn.students.conv_layers`) with these widths."""
    from kdlib.snn.students import conv_layers

    products, c_in, size = [], 1, 28
    for conv in conv_layers(channels):
        size = conv.output_size(size)
        products.append((c_in * conv.kernel**2, conv.channels, size * size))
        c_in = conv.channels
    widths = [c_in * size * size, *hidden, num_classes]
    return products + [(a, b, 1) for a, b in zip(widths[:-1], widths[1:], strict=True)]


def student_flops(cfg, steps: int) -> float:  # noqa: ANN001
    """Training FLOPs per image of the student ``cfg`` describes, at ``steps``."""
    if cfg.arch == "cnn":
        return product_flops(cnn_products(list(cfg.channels), list(cfg.hidden)), steps, cfg.encoding == "direct")
    return training_flops(list(cfg.hidden), 10, steps, cfg.encoding == "direct")


SHAPE: dict = {}  # --arch / --channels / --hidden: the student's shape, if not that of params.yaml
CNN_HIDDEN = [128]  # the conv student's dense layer, unless --hidden says otherwise


def set_shape(arch: str | None, channels: list[int] | None, hidden: list[int] | None) -> None:
    """Train a student of another shape than params.yaml's (the command line's --arch, --channels, --hidden)."""
    SHAPE.update({k: v for k, v in (("arch", arch), ("channels", channels), ("hidden", hidden)) if v})
    if arch == "cnn" and not hidden:
        SHAPE["hidden"] = CNN_HIDDEN


def _student_cfg(steps: int):
    from kdlib.core import params as P

    return P.load(ROOT / "params.yaml").student.model_copy(update={"steps": steps, **SHAPE})


def _one_pass_neurons(layers: int):
    """Stand-ins for ``layers`` layers of neurons that cost one pass over memory each: a copy of the input
    current forward and a copy of the gradient backward (the ``floor`` implementation)."""
    import torch
    from torch import nn

    def fresh(x):  # T steps stored in one step's memory order (channels last for conv maps), as the kernel writes
        step = x[0]
        dense = step.is_contiguous() or (step.dim() == 4 and step.is_contiguous(memory_format=torch.channels_last))
        return torch.empty_strided(x.shape, (step.numel(), *step.stride())) if dense else torch.empty(x.shape)

    class Copy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, current):
            return fresh(current).copy_(current)

        @staticmethod
        def backward(ctx, grad):
            return fresh(grad).copy_(grad)

    class OnePass(nn.Module):
        def forward(self, current):
            return Copy.apply(current)

    return nn.ModuleList(OnePass() for _ in range(layers))


def _build(impl: str, steps: int):
    """(model, forward(x) -> logits) for one implementation."""
    import torch
    from torch import nn

    cfg = _student_cfg(steps)
    torch.manual_seed(0)
    if cfg.arch == "cnn" and impl not in ("kdlib", "eager", "floor"):
        return _build_cnn_peer(impl, cfg, steps)
    if impl in ("kdlib", "eager", "floor"):
        from kdlib.core.data import encode
        from kdlib.snn import native
        from kdlib.snn.students import build_student

        if impl == "eager":
            os.environ["KDLIB_NATIVE"] = "0"  # read when the kernel is first asked for
        elif impl == "kdlib" and native.kernel() is None:
            raise RuntimeError("the LIF kernel of kdlib.snn.native is not available: nothing to measure as 'kdlib'")
        net = build_student(cfg)
        if impl == "floor":
            net.neurons = _one_pass_neurons(len(net.neurons))
        return net, lambda x: net(encode(x, steps, "direct")).logits
    widths = [784, *cfg.hidden]
    linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
    head = nn.Linear(widths[-1], 10)
    model = nn.ModuleList([*linears, head])
    if impl == "loop":
        import norse.torch as nt

        p = nt.LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / cfg.tau_mem), v_th=torch.as_tensor(cfg.v_th))
        cells = [nt.LIFBoxCell(p, dt=1.0) for _ in cfg.hidden]

        def forward(x):
            h0, states, out = x.flatten(1), [None] * len(cells), 0.0
            for _ in range(steps):
                h = h0
                for j, (lin, cell) in enumerate(zip(linears, cells, strict=True)):
                    h, states[j] = cell(lin(h), states[j])
                out = out + head(h)
            return out / steps

        return model, forward
    if impl == "snntorch":
        import snntorch as snn
        from snntorch import surrogate

        # snnTorch's Leaky integrates mem = β·mem + I; with β = 1 − 1/τ and the input scaled by 1/τ this is
        # the student's v' = v + (I − v)/τ, reset to zero at the same threshold.
        beta, gain = 1.0 - 1.0 / cfg.tau_mem, 1.0 / cfg.tau_mem
        neurons = [snn.Leaky(beta=beta, threshold=cfg.v_th, reset_mechanism="zero",
                             spike_grad=surrogate.fast_sigmoid(slope=1.0)) for _ in cfg.hidden]

        def forward(x):
            h0, mems, out = x.flatten(1), [n.init_leaky() for n in neurons], 0.0
            for _ in range(steps):
                h = h0
                for j, (lin, neuron) in enumerate(zip(linears, neurons, strict=True)):
                    h, mems[j] = neuron(gain * lin(h), mems[j])
                out = out + head(h)
            return out / steps

        return model, forward
    if impl == "spikingjelly":
        from spikingjelly.activation_based import layer, neuron, surrogate

        # direct input: the first layer once, then the same current at every step, as in kdlib's student
        lifs = nn.ModuleList(neuron.LIFNode(tau=cfg.tau_mem, decay_input=True, v_threshold=cfg.v_th, v_reset=0.0,
                                            surrogate_function=surrogate.Sigmoid(), step_mode="m")
                             for _ in cfg.hidden)
        later = [layer.SeqToANNContainer(lin) for lin in [*linears[1:], head]]
        return model, _spikingjelly_forward(lambda x: linears[0](x.flatten(1)), lifs, later, steps)
    raise ValueError(f"unknown implementation {impl!r}")


def _spikingjelly_forward(first, lifs, later, steps: int):  # noqa: ANN001, ANN202
    """SpikingJelly's multi-step network: the first layer once (direct input), each LIF layer on all T steps."""
    from spikingjelly.activation_based import functional

    def forward(x):
        functional.reset_net(lifs)  # every image starts from v = 0
        current = first(x)
        h = lifs[0](current.unsqueeze(0).expand(steps, *current.shape))
        for lay, lif in zip(later[:-1], lifs[1:], strict=True):
            h = lif(lay(h))
        return later[-1](h).mean(0)

    return forward


def _build_cnn_peer(impl: str, cfg, steps: int):  # noqa: ANN001, ANN202
    """(model, forward) of a conv implementation other than kdlib's: today's pooled student, or a peer library
    with the layers of :class:`kdlib.snn.students.SpikingCNN` (strided convolutions, batch norm, LIF)."""
    from torch import nn

    from kdlib.core.data import encode
    from kdlib.snn.students import LIFParameters, SpikingNeurons, conv_layers, over_time, threshold_current

    if impl == "pooled":  # the SpikingCNN kdlib had before: 3×3 convolutions, neurons, 2×2 average pooling
        c1, c2 = cfg.channels[:2]
        synapses = nn.ModuleList([nn.Conv2d(1, c1, 3, padding=1),
                                  nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c1, c2, 3, padding=1)),
                                  nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(c2 * 49, cfg.hidden[0]))])
        neurons = [SpikingNeurons(LIFParameters(cfg.tau_mem, cfg.v_th)) for _ in synapses]
        head = nn.Linear(cfg.hidden[0], 10)

        def pooled(x):
            h = encode(x, steps, "direct")
            for synapse, lif in zip(synapses, neurons, strict=True):
                h = lif(over_time(synapse, h))
            return over_time(head, h).mean(0)

        return nn.ModuleList([synapses, head]), pooled
    convs, c_in, size = [], 1, 28
    for conv in conv_layers(list(cfg.channels)):
        convs.append(nn.Sequential(nn.Conv2d(c_in, conv.channels, conv.kernel, conv.stride, conv.kernel // 2,
                                             bias=False), nn.BatchNorm2d(conv.channels)))
        c_in, size = conv.channels, conv.output_size(size)
    widths = [c_in * size * size, *cfg.hidden]
    dense = [nn.Sequential(nn.Linear(a, b, bias=False), nn.BatchNorm1d(b))
             for a, b in zip(widths[:-1], widths[1:], strict=True)]
    layers, head = [*convs, nn.Sequential(nn.Flatten(), *dense[0]), *dense[1:]], nn.Linear(widths[-1], 10)
    for layer in layers:
        nn.init.constant_(layer[-1].weight, threshold_current(LIFParameters(cfg.tau_mem, cfg.v_th)))
    model = nn.ModuleList([*layers, head])
    if impl == "snntorch":  # the snnTorch way: every layer called once per step; the stem once (direct input)
        import snntorch as snn
        from snntorch import surrogate

        beta, gain = 1.0 - 1.0 / cfg.tau_mem, 1.0 / cfg.tau_mem  # as in the MLP rows: v' = v + (I − v)/τ
        lifs = [snn.Leaky(beta=beta, threshold=cfg.v_th, reset_mechanism="zero",
                          spike_grad=surrogate.fast_sigmoid(slope=1.0)) for _ in layers]

        def snntorch_forward(x):
            stem, mems, out = layers[0](x), [n.init_leaky() for n in lifs], 0.0
            for _ in range(steps):
                h, mems[0] = lifs[0](gain * stem, mems[0])
                for j in range(1, len(layers)):
                    h, mems[j] = lifs[j](gain * layers[j](h), mems[j])
                out = out + head(h)
            return out / steps

        return model, snntorch_forward
    if impl == "spikingjelly":  # multi-step: each layer on all T steps at once, SpikingJelly's LIF on (T, B, ...)
        from spikingjelly.activation_based import layer, neuron, surrogate

        lifs = nn.ModuleList(neuron.LIFNode(tau=cfg.tau_mem, decay_input=True, v_threshold=cfg.v_th, v_reset=0.0,
                                            surrogate_function=surrogate.SuperSpike(alpha=1.0), step_mode="m")
                             for _ in layers)
        later = [layer.SeqToANNContainer(lay) for lay in [*layers[1:], head]]
        return model, _spikingjelly_forward(layers[0], lifs, later, steps)
    raise ValueError(f"unknown implementation {impl!r} for arch 'cnn'")


def measure_one(impl: str, steps: int, batch_size: int, iters: int, repeats: int, threads: int | None = None) -> dict:
    """Training throughput of one implementation, per repeat (runs in its own process). With ``threads``
    (a worker of ``seeds``), no matmul rate is measured: other workers share the cores."""
    import torch

    from kdlib.core.data import batches, load_dataset

    torch.set_num_threads(threads or os.cpu_count() or 1)
    data = load_dataset("mnist-5k").train
    model, forward = _build(impl, steps)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # the workbook's optimiser, for every one
    pool = [(b.x, b.y) for b in batches(data, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
            if len(b.y) == batch_size]

    def step(i: int) -> None:
        x, y = pool[i % len(pool)]
        loss = torch.nn.functional.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(5):
        step(i)
    rates, gflops = [], []
    for _ in range(repeats):
        if threads is None:
            gflops.append(matmul_gflops(repeats=3))
        t = time.perf_counter()
        for i in range(iters):
            step(i)
        rates.append(iters * batch_size / (time.perf_counter() - t))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"impl": impl, "steps": steps, "runs": rates, "matmul_gflops": gflops, "peak_rss_mib": round(peak_mib, 1)}


def tables(results: dict) -> str:
    """The README's two tables (training images per second; shares of the roofline) from a results file."""
    rows = results["results"]
    names = {"kdlib": "kdlib student", "eager": "same, eager LIF loop", "loop": "norse, per-step loop",
             "pooled": "before: pooled SpikingCNN",
             "snntorch": "snnTorch", "spikingjelly": "SpikingJelly 2.0", "seeds": "kdlib, side by side",
             "seeds-snntorch": "snnTorch, side by side", "seeds-spikingjelly": "SpikingJelly, side by side"}
    shown = [impl for impl in names if impl in rows[0]]
    out = ["| T | " + " | ".join(names[i] for i in shown) + " | matmul GFLOP/s |",
           "|---" * (len(shown) + 2) + "|"]
    out += [f"| {r['steps']} | " + " | ".join(f"{r[i]['images_per_second']:,.0f}" for i in shown)
            + f" | {r['kdlib']['matmul_gflops']:.0f} |" for r in rows]
    bounds = [(k, label) for k, label in (("kdlib", "kdlib student"), ("floor", "its floor"),
                                         ("seeds", "side by side"), ("seeds-floor", "their floor")) if k in rows[0]]
    out += ["", "| T | " + " | ".join(label for _, label in bounds) + " |", "|---" * (len(bounds) + 1) + "|"]
    out += [f"| {r['steps']} | " + " | ".join(f"{r[k]['images_per_second'] / r['roofline_images_per_second']:.0%}"
                                               for k, _ in bounds) + " |" for r in rows]
    return "\n".join(out)


def width_table(paths: list[Path]) -> str:
    """The cost of each conv student's width: one results file per shape (``--channels``), T = 4."""
    out = ["| channels | dense | training FLOPs / image | kdlib student (img/s) | side by side (img/s) | "
           "peak memory, one / side by side (MiB) | minutes per MNIST epoch of a student, side by side |",
           "|---" * 7 + "|"]
    for path in paths:
        results = json.loads(path.read_text())
        student, row = results["meta"]["student"], results["results"][0]
        flops = product_flops(cnn_products(student["channels"], student["hidden"]), row["steps"], True)
        seeds = row.get("seeds", {}).get("images_per_second")
        # 55,000 training images; side by side, each of the workers trains at the rate divided among them
        epoch = f"{55_000 * row['seeds']['workers'] / seeds / 60:.1f}" if seeds else "–"
        out.append(f"| {'/'.join(map(str, student['channels']))} | {'/'.join(map(str, student['hidden']))} | "
                   f"{flops / 1e6:,.0f} M | {row['kdlib']['images_per_second']:,.0f} | "
                   f"{seeds or 0:,.0f} | {row['kdlib']['peak_rss_mib']:,.0f} / "
                   f"{row.get('seeds', {}).get('peak_rss_mib', 0):,.0f} | {epoch} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--arch", choices=("mlp", "cnn"), help="the student's architecture (default: params.yaml's)")
    parser.add_argument("--channels", type=int, nargs="+", help="cnn: its convolutions' channels")
    parser.add_argument("--hidden", type=int, nargs="+", help="its dense widths (cnn: 128 unless given)")
    parser.add_argument("--impls", nargs="+", help="default: every implementation of the architecture")
    parser.add_argument("--iters", type=int, default=40, help="optimiser steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per round")
    parser.add_argument("--rounds", type=int, default=3, help="turns of every implementation")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results.json (mlp), results.cnn.json (cnn)")
    parser.add_argument("--one", nargs=2, metavar=("IMPL", "T"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--table", action="store_true", help="print the performance page's tables from --out and stop")
    parser.add_argument("--width-table", type=Path, nargs="+", metavar="FILE",
                        help="print the cost per width of conv students from their results files and stop")
    args = parser.parse_args()
    set_shape(args.arch, args.channels, args.hidden)
    arch = _student_cfg(4).arch
    args.out = args.out or ROOT / "benchmarks" / ("results.json" if arch == "mlp" else f"results.{arch}.json")
    args.impls = args.impls or ["kdlib", "eager", "loop" if arch == "mlp" else "pooled", "snntorch", "spikingjelly",
                                "seeds", "floor", "seeds-floor", "seeds-snntorch", "seeds-spikingjelly"]
    if args.table:
        print(tables(json.loads(args.out.read_text())))
        return
    if args.width_table:
        print(width_table(args.width_table))
        return
    cfg = _student_cfg(4)
    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]), cfg.batch_size, args.iters, args.repeats,
                                     args.threads)))
        return

    import torch

    from kdlib.core import params as P
    from kdlib.stages.workers import parallel_workers

    torch.set_num_threads(os.cpu_count() or 1)
    gflops = matmul_gflops()
    print(f"dense fp32 matmul: {gflops:.1f} GFLOP/s on {torch.get_num_threads()} threads")
    workers = parallel_workers(len(P.load(ROOT / "params.yaml").distill.seeds), torch.device("cpu"))

    def launch(impl: str, steps: int, threads: int | None = None) -> subprocess.Popen:
        one = SIDE_BY_SIDE.get(impl, impl)
        shape = [*(["--arch", args.arch] if args.arch else []), *(["--channels", *map(str, args.channels)]
                 if args.channels else []), *(["--hidden", *map(str, args.hidden)] if args.hidden else [])]
        cmd = [sys.executable, __file__, "--one", one, str(steps), "--iters", str(args.iters),
               "--repeats", str(args.repeats), *shape, *(["--threads", str(threads)] if threads else [])]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    def result(proc: subprocess.Popen) -> dict:
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"{proc.args} failed with exit status {proc.returncode}")
        return json.loads(out.strip().splitlines()[-1])

    runs: dict[tuple[int, str], list[dict]] = {}
    for _ in range(args.rounds):
        for steps in args.steps:
            for impl in args.impls:
                if impl in SIDE_BY_SIDE:  # all workers at once; the rate is the sum of theirs, repeat by repeat
                    group = [result(p) for p in [launch(impl, steps, threads=1) for _ in range(workers)]]
                    one = {"runs": [sum(r) for r in zip(*(g["runs"] for g in group), strict=True)],
                           "matmul_gflops": [], "peak_rss_mib": sum(g["peak_rss_mib"] for g in group)}
                else:
                    one = result(launch(impl, steps))
                runs.setdefault((steps, impl), []).append(one)
    results = []
    for steps in args.steps:
        flops = student_flops(cfg, steps)
        row: dict = {"steps": steps}
        for impl in args.impls:
            rates = [r for one in runs[steps, impl] for r in one["runs"]]
            window = [g for one in runs[steps, impl] for g in one["matmul_gflops"]]
            row[impl] = {"images_per_second": statistics.median(rates), "runs": rates,
                         "matmul_gflops": statistics.median(window) if window else None,
                         "peak_rss_mib": max(one["peak_rss_mib"] for one in runs[steps, impl])}
        k = row["kdlib"]["images_per_second"]
        row["roofline_images_per_second"] = row["kdlib"]["matmul_gflops"] * 1e9 / flops
        row["kdlib_vs_roofline"] = k / row["roofline_images_per_second"]
        for bound in ("seeds", "floor", "seeds-floor"):
            if bound in row:
                row[f"{bound}_vs_roofline"] = row[bound]["images_per_second"] / row["roofline_images_per_second"]
        for impl in SIDE_BY_SIDE:
            if impl in row:
                row[impl]["workers"] = workers
        for other in PEERS:
            if other in row:
                row[f"kdlib_vs_{other}"] = k / row[other]["images_per_second"]
            if "seeds" in row and f"seeds-{other}" in row:  # both side by side, as the stage trains
                peer = row[f"seeds-{other}"]["images_per_second"]
                row[f"seeds_vs_seeds-{other}"] = row["seeds"]["images_per_second"] / peer
        results.append(row)
        print(f"T={steps:>3}: roofline {row['roofline_images_per_second']:8.0f} img/s | " + " | ".join(
            f"{impl} {row[impl]['images_per_second']:7.0f} img/s ({row[impl]['peak_rss_mib']:.0f} MiB)"
            for impl in args.impls) + f" | kdlib = {row['kdlib_vs_roofline']:.0%} of roofline" + "".join(
            f", {row[f'kdlib_vs_{o}']:.2f}x {o}" for o in PEERS if o in row) + "".join(
            f", {row[f'seeds_vs_seeds-{o}']:.2f}x {o} side by side" for o in PEERS if f"seeds_vs_seeds-{o}" in row) + (
            f" | {workers} seeds together = {row['seeds_vs_roofline']:.0%} of roofline" if "seeds" in row else "") + (
            f" | one-pass neuron = {row['floor_vs_roofline']:.0%} of roofline" if "floor" in row else "") + (
            f" ({row['seeds-floor_vs_roofline']:.0%} as seeds)" if "seeds-floor" in row else ""))
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "matmul_gflops": gflops, "student": cfg.model_dump(), "iters": args.iters, "repeats": args.repeats,
            "rounds": args.rounds, "seed_workers": workers}
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
