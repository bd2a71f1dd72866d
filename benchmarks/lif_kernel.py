"""The compiled LIF kernel alone, at the study's shapes, against the kernel of another revision.

    uv run python benchmarks/lif_kernel.py [--against 2d7d34c] [--steps 4 8 16] [--rounds 5]

Times ``lif_forward`` and ``lif_backward`` of ``kdlib/snn/lif_kernel.c`` (built as :mod:`kdlib.snn.native` builds
it) on one thread, on a (T, batch × width) current of the default student's hidden layer (batch 128,
width 400), and the same two functions of the kernel of git revision ``--against``, built from that
revision's source with that revision's compiler flags. The two builds take turns, ``--rounds`` times;
each reports the median over all its repeats, in microseconds per call. Both must give the same bits
(potentials, spikes and the current's gradient); the script stops if they do not.
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from kdlib.snn import native  # noqa: E402


def build_revision(rev: str, folder: Path) -> ctypes.CDLL:
    """The kernel of git revision ``rev``, compiled with the flags its ``kdlib/snn/native.py`` used."""
    source = subprocess.run(["git", "show", f"{rev}:kdlib/snn/lif_kernel.c"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = subprocess.run(["git", "show", f"{rev}:kdlib/snn/native.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    flags = ast.literal_eval(re.search(r"^FLAGS = (\(.*?\))", module, re.M | re.S).group(1))
    (folder / "lif_kernel.c").write_text(source)
    library = folder / f"lif_kernel-{rev}.so"
    subprocess.run(["cc", *flags, "-o", str(library), str(folder / "lif_kernel.c")], check=True)
    return _typed(ctypes.CDLL(str(library)))


def _typed(lib: ctypes.CDLL) -> ctypes.CDLL:
    ptr, i64, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    lib.lif_forward.argtypes = [ptr, i64, ptr, ptr, i64, i64, f32, f32, f32]
    lib.lif_backward.argtypes = [ptr, ptr, ptr, i64, i64, f32, f32, f32]
    return lib


def run(lib: ctypes.CDLL, current: torch.Tensor, grad: torch.Tensor, repeats: int) -> tuple[dict, list]:
    """Microseconds per forward and backward call (one list each), and the outputs of the last call."""
    steps, n = current.shape
    keep, gain, v_th = 0.5, 0.5, 1.0  # tau_mem = 2, the study's
    potentials, spikes, grad_current = (torch.empty_like(current) for _ in range(3))
    times: dict[str, list[float]] = {"forward": [], "backward": []}
    for _ in range(repeats):
        t = time.perf_counter()
        lib.lif_forward(current.data_ptr(), n, potentials.data_ptr(), spikes.data_ptr(), steps, n, keep, gain, v_th)
        times["forward"].append((time.perf_counter() - t) * 1e6)
        t = time.perf_counter()
        lib.lif_backward(grad.data_ptr(), potentials.data_ptr(), grad_current.data_ptr(), steps, n, keep, gain, v_th)
        times["backward"].append((time.perf_counter() - t) * 1e6)
    return times, [potentials, spikes, grad_current]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="2d7d34c", help="git revision whose kernel to compare with")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--neurons", type=int, default=128 * 400, help="batch × width of one step")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    current_lib = native.kernel()
    if current_lib is None:
        raise SystemExit("the kernel of this checkout cannot be built here (no C compiler, or KDLIB_NATIVE=0)")
    print(f"{platform.processor() or platform.machine()}; this checkout against {args.against}")
    with tempfile.TemporaryDirectory() as folder:
        builds = {"this checkout": current_lib, args.against: build_revision(args.against, Path(folder))}
        print("| T | build | forward (µs) | backward (µs) |\n|---|---|---|---|")
        for steps in args.steps:
            gen = torch.Generator().manual_seed(steps)
            current = torch.randn(steps, args.neurons, generator=gen) + 0.8
            grad = torch.randn(steps, args.neurons, generator=gen)
            times: dict[str, dict[str, list[float]]] = {name: {"forward": [], "backward": []} for name in builds}
            outputs = {}
            for _ in range(args.rounds):
                for name, lib in builds.items():
                    one, outputs[name] = run(lib, current, grad, args.repeats)
                    for key in one:
                        times[name][key] += one[key]
            first, *others = outputs.values()
            for other in others:
                if not all(torch.equal(a, b) for a, b in zip(first, other, strict=True)):
                    raise SystemExit(f"T = {steps}: the two kernels give different bits")
            for name in builds:
                fwd, bwd = (statistics.median(times[name][k]) for k in ("forward", "backward"))
                print(f"| {steps} | {name} | {fwd:.0f} | {bwd:.0f} |")


if __name__ == "__main__":
    main()
