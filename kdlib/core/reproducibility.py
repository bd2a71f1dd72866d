"""The same numbers at every thread count and on every host of one CPU vendor: pinned instruction-set paths.

On the CPU, two things change the last bits of a training run, and over epochs its selected model:

* **the instruction set**: MKL's matrix products and ATen's vectorised kernels (``exp``, ``log``,
  reductions) have AVX2 and AVX-512 code paths that round differently, and each host picks the
  widest it has;
* **the thread count**: MKL splits a product's reduction between threads.

Importing :mod:`kdlib` pins both where the libraries allow it, by setting, before torch runs its first
kernel, the environment variables that the libraries read at that moment:

``MKL_CBWR=AVX2,STRICT``
    MKL's conditional numerical reproducibility: the AVX2 code path on every host that has it, and
    (``STRICT``) results of matrix products independent of the number of threads.
``ATEN_CPU_CAPABILITY=avx2``
    ATen's kernels at most AVX2, never the AVX-512 variants.
``ONEDNN_MAX_CPU_ISA=AVX2``
    the same for oneDNN (the convolutions of the CNN variants).

A variable that is already set is left as it is, so a user can choose otherwise. Setting
``KDLIB_PIN_NUMERICS=0`` leaves all three alone. ``benchmarks/pinning_cost.py`` measures what the pins
cost (the README quotes it); on an AVX-512 host they give up its wider kernels.
The pins act only if they are in the environment before torch computes anything: the stage runner's
notebooks import kdlib first, and their kernels inherit the runner's environment.

What the pins buy, as measured: one small training run gives the same weights on 1 and 2 threads, and the
same weights on an AMD EPYC host with AVX2 only and on one with AVX-512; an Intel Xeon host with AVX-512
gives other weights under the same pins (some library still takes a vendor-specific path there).
``tests/test_reproducibility.py`` checks the thread count on every host and the weights against a
committed hash per CPU vendor, so each machine that runs the tests checks the claim.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

OPT_OUT = "KDLIB_PIN_NUMERICS"
PINS: dict[str, str] = {
    "MKL_CBWR": "AVX2,STRICT",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def pin_numerics(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set each of :data:`PINS` that ``environ`` does not set already; return the values in force."""
    if environ.get(OPT_OUT, "1") == "0":
        return {name: environ[name] for name in PINS if name in environ}
    for name, value in PINS.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in PINS}
