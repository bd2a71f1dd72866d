"""Peak memory of evaluating a student as the test set grows: evaluation streams in bounded chunks.

    uv run python benchmarks/eval_memory.py [--sizes 1000 10000 50000]
    uv run python benchmarks/eval_memory.py --arch cnn [--channels 16 32] [--sizes 1000 10000 50000]
    uv run python benchmarks/eval_memory.py --lava [--sizes 500 2000]
    uv run python benchmarks/eval_memory.py --trim-cost [--rounds 5]    # evaluation time, heap trimmed or not

For each size, a fresh process builds the default student of ``params.yaml``, makes a test split of that
many real MNIST digits (mnist-5k's images repeated as needed), records its resident memory after the data
is in memory, evaluates the student over the split (logits, spikes and synaptic operations, as the
distillation notebook does) and reports how much the peak resident memory grew during the evaluation, and
the evaluation's images per second on all cores. ``--arch cnn`` evaluates the conv student
(:class:`kdlib.snn.students.SpikingCNN`, dense layer 128) instead of params.yaml's. By default the chunks
are evaluate's own (:func:`kdlib.measure.analysis.chunk_size_for`: at most 2^22 neuron-steps, about 200 images
of the 16/32 conv student, 250 of the MLP); ``--chunk-size`` sets them. A conv student's activations are six
times an MLP student's per image: glibc's heap fragments under its blocks of 10–30 MB, which it stops
returning to the system once its dynamic mmap threshold has grown, so evaluate also trims the heap once
resident memory has grown 64 MiB past its level after the first chunk
(:func:`kdlib.measure.analysis.release_freed_memory`; ``--trim-cost`` times evaluation with that trim, a trim
after every chunk and none: on a quiet 2-core AMD EPYC, medians of 9, MLP 0.403 / 0.390 / 0.428 s, conv
0.684 / 0.652 / 0.694 s, no measurable cost; an earlier ad-hoc timing on the same machine loaded with two
other jobs found a trim after every chunk 1.7–2.2× slower). Measured there (AVX2), peak growth at 1k / 10k /
50k images: chunks of 250 before either change 0 / 82 / 220 MiB; evaluate's own chunks 0 / 0 / 0 MiB (2,272–3,763
images/s; the MLP 0 / 0 / 0 at 19,624–29,997 images/s); chunks of 1,000 still 8 / 133 / 170 MiB.

With ``--lava`` the model is the default Loihi student of ``params.yaml`` (untrained: memory does not
depend on the weights), exported and run in Lava's fixed-point simulation chunk by chunk as the Loihi
notebook does; Lava runs its processes in child processes, so their peak is reported too.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kdlib.core.data import Split

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _peak_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _pool(size: int) -> Split:
    from kdlib.core.data import Split, load_dataset

    pool = load_dataset("mnist-5k").test
    reps = -(-size // len(pool))
    return Split(pool.x.repeat(reps, 1, 1, 1)[:size].clone(), pool.y.repeat(reps)[:size].clone())


def measure(size: int, shape: dict, chunk_size: int) -> dict:
    import time

    from kdlib.core import params as P
    from kdlib.measure.analysis import evaluate
    from kdlib.snn.students import build_student

    cfg = P.load(ROOT / "params.yaml").student.model_copy(update=shape)
    split = _pool(size)
    net = build_student(cfg).eval()
    before, tic = _peak_mib(), time.perf_counter()
    ev = evaluate(net, split, cfg.steps, encoding=cfg.encoding, chunk_size=chunk_size or None)
    seconds = time.perf_counter() - tic
    return {"images": size, "peak_before_mib": before, "peak_after_mib": _peak_mib(),
            "evaluation_growth_mib": _peak_mib() - before, "accuracy": ev.accuracy,
            "images_per_second": size / seconds}


def measure_lava(size: int) -> dict:
    import tempfile

    from kdlib.core import params as P
    from kdlib.loihi import deploy, slayer

    cfg = P.load(ROOT / "params.yaml").loihi
    split = _pool(size)
    net = slayer.build_loihi_student(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        path = net.export_hdf5(Path(tmp) / "student.net")
        before = _peak_mib()
        run = deploy.run_lava(path, deploy.spike_chunks(split, cfg.steps, cfg.chunk_size))
    return {"images": size, "peak_before_mib": before, "peak_after_mib": _peak_mib(),
            "evaluation_growth_mib": _peak_mib() - before, "children_peak_mib": _peak_mib(resource.RUSAGE_CHILDREN),
            "seconds": run.seconds}


def trim_cost(rounds: int) -> None:
    """Evaluation time of the MLP (10,000 images) and the conv student (3,000) with evaluate's conditional heap
    trim, with a trim after every chunk, and with none: the median of ``rounds`` alternated runs, one process."""
    import statistics
    import time

    import torch

    from kdlib.core import params as P
    from kdlib.measure import analysis as A
    from kdlib.snn.students import build_student

    torch.manual_seed(0)
    real_trim, real_resident = A.release_freed_memory, A.resident_bytes
    modes = {"evaluate's (when grown 64 MiB)": (real_trim, real_resident),
             "after every chunk": (real_trim, lambda: 1 << 60), "never": (lambda: None, real_resident)}
    print("| student | trim | seconds (median) |\n|---|---|---|")
    for arch, size in (("mlp", 10000), ("cnn", 3000)):
        shape = {"arch": arch, "hidden": [128]} if arch == "cnn" else {"arch": arch}
        cfg = P.load(ROOT / "params.yaml").student.model_copy(update=shape)
        net, split = build_student(cfg).eval(), _pool(size)
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(rounds):
            for mode, (trim, resident) in modes.items():
                A.release_freed_memory, A.resident_bytes = trim, resident
                tic = time.perf_counter()
                A.evaluate(net, split, cfg.steps, encoding=cfg.encoding)
                times[mode].append(time.perf_counter() - tic)
        A.release_freed_memory, A.resident_bytes = real_trim, real_resident
        for mode, values in times.items():
            print(f"| {arch} ({size:,} images) | {mode} | {statistics.median(values):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--lava", action="store_true", help="the Loihi student in Lava instead")
    parser.add_argument("--arch", choices=("mlp", "cnn"), help="the student's architecture (default: params.yaml's)")
    parser.add_argument("--channels", type=int, nargs="+", help="cnn: its convolutions' channels")
    parser.add_argument("--chunk-size", type=int, default=0, help="images per evaluated chunk (default: evaluate's)")
    parser.add_argument("--trim-cost", action="store_true", help="evaluation time with and without heap trims")
    parser.add_argument("--rounds", type=int, default=5, help="--trim-cost: alternated runs per mode (default 5)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trim_cost:
        trim_cost(args.rounds)
        return
    shape = {"arch": args.arch, "hidden": [128]} if args.arch == "cnn" else ({"arch": args.arch} if args.arch else {})
    if args.channels:
        shape["channels"] = args.channels
    if args.one:
        print(json.dumps(measure_lava(args.one) if args.lava else measure(args.one, shape, args.chunk_size)))
        return
    sizes = args.sizes or ([500, 2000] if args.lava else [1000, 10000, 50000])
    header = "| test images | data in memory (MiB peak before) | growth during evaluation (MiB) |"
    header += " Lava processes, largest (MiB) | Lava seconds |" if args.lava else " images / s |"
    print(header + "\n" + "|---" * header.count(" |") + "|")
    for size in sizes:
        shape_args = ["--chunk-size", str(args.chunk_size), *(["--arch", args.arch] if args.arch else []),
                      *(["--channels", *map(str, args.channels)] if args.channels else [])]
        out = subprocess.run([sys.executable, __file__, "--one", str(size), *(["--lava"] if args.lava else shape_args)],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        row = f"| {size:,} | {r['peak_before_mib']:,.0f} | {r['evaluation_growth_mib']:,.1f} |"
        row += f" {r['children_peak_mib']:,.0f} | {r['seconds']:.1f} |" if args.lava else \
            f" {r['images_per_second']:,.0f} |"
        print(row)


if __name__ == "__main__":
    main()
