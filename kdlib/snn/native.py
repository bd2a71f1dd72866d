"""The compiled CPU kernel of the LIF neuron (``lif_kernel.c``), built on first use and loaded with ctypes.

:class:`kdlib.snn.students.SpikingNeurons` runs its LIF sequence through this kernel when the current is a
float32 CPU tensor and the kernel is available, and through the eager PyTorch loop otherwise (GPUs,
other dtypes, no C compiler). Both compute the same operations in the same order and give the same bits
(``tests/test_students.py`` checks it), so where a run happens to train changes its speed, not its numbers.

The kernel is compiled with the system C compiler (``$CC``, else ``cc``) into
``$XDG_CACHE_HOME/kdlib`` (``~/.cache/kdlib``), under a name that hashes the source and the flags, so an
edit rebuilds it; parallel processes building it at once each write their own file and move it into
place. No compiler, or a failed build, gives one warning and the eager loop. ``KDLIB_NATIVE=0`` turns the
kernel off (to compare, or to rule it out).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("lif_kernel.c")
# -ffp-contract=off: every product and sum is rounded as PyTorch's own kernels round it; -fno-trapping-math: the
# spike comparison may become a vector select (no value changes, see lif_kernel.c)
FLAGS = ("-O3", "-ffp-contract=off", "-fno-trapping-math", "-shared", "-fPIC")


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kdlib"


def _build(compiler: str) -> Path:
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), compiler.encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    library = _cache_dir() / f"lif_kernel-{key}.so"
    if not library.is_file():
        library.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".partial-lif_kernel-", suffix=".so", dir=library.parent)
        os.close(fd)
        try:
            subprocess.run([compiler, *FLAGS, "-o", tmp, str(SOURCE)], check=True, capture_output=True, text=True)
            os.replace(tmp, library)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return library


@functools.cache
def kernel() -> ctypes.CDLL | None:
    """The loaded kernel library, or None where it is turned off or cannot be built (warned once)."""
    if os.environ.get("KDLIB_NATIVE", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        warnings.warn("no C compiler found (set CC): the LIF neuron runs as an eager PyTorch loop, with the "
                      "same results but slower", RuntimeWarning, stacklevel=2)
        return None
    try:
        lib = ctypes.CDLL(str(_build(compiler)))
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or err
        warnings.warn(f"building {SOURCE.name} with {compiler} failed, so the LIF neuron runs as an eager "
                      f"PyTorch loop (same results, slower):\n{detail}", RuntimeWarning, stacklevel=2)
        return None
    ptr, i64, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    lib.lif_forward.argtypes = [ptr, i64, ptr, ptr, i64, i64, f32, f32, f32]
    lib.lif_backward.argtypes = [ptr, ptr, ptr, i64, i64, f32, f32, f32]
    lib.lif_forward.restype = lib.lif_backward.restype = None
    return lib


def usable(current: Tensor) -> bool:
    """Whether the kernel can run the LIF sequence of ``current``."""
    return current.device.type == "cpu" and current.dtype == torch.float32 and kernel() is not None


def _dense(step: Tensor) -> bool:
    """Whether a step's elements fill its memory without gaps, in the usual order or channels last (the
    kernel works element by element, so any such order serves, as long as every tensor of a call shares it)."""
    return step.is_contiguous() or (step.dim() == 4 and step.is_contiguous(memory_format=torch.channels_last))


def lif_forward(current: Tensor, keep: float, gain: float, v_th: float) -> tuple[Tensor, Tensor]:
    """Membrane potentials before the reset and spikes (both (T, …) like ``current``, in its memory order) of
    the LIF sequence."""
    steps, step = current.shape[0], current[0]
    constant = steps > 1 and current.stride(0) == 0 and _dense(step)  # direct encoding: one step stored
    if not constant and not (_dense(step) and current.stride(0) == step.numel()):
        current, step = current.contiguous(), current[0].contiguous()
    potentials = torch.empty_strided(current.shape, (step.numel(), *step.stride()), dtype=current.dtype)
    spikes = torch.empty_like(potentials)
    kernel().lif_forward(current.data_ptr(), 0 if constant else step.numel(), potentials.data_ptr(),
                         spikes.data_ptr(), steps, step.numel(), keep, gain, v_th)
    return potentials, spikes


def lif_backward(grad_spikes: Tensor, potentials: Tensor, keep: float, gain: float, v_th: float) -> Tensor:
    """The gradient of the loss with respect to the current, from that with respect to the spikes."""
    if grad_spikes.stride() != potentials.stride():  # the kernel walks both in the potentials' memory order
        grad_spikes = torch.empty_like(potentials).copy_(grad_spikes)
    grad_current = torch.empty_like(potentials)
    kernel().lif_backward(grad_spikes.data_ptr(), potentials.data_ptr(), grad_current.data_ptr(),
                          potentials.shape[0], potentials[0].numel(), keep, gain, v_th)
    return grad_current
