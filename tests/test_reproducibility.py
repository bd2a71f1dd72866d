"""The study's numbers do not depend on the thread count, and each measured kind of host reproduces itself.

A small real run (a teacher and a distilled LIF student, one epoch each on mnist-5k) is fingerprinted by
a hash of its weights. With the pins of :mod:`kdlib.core.reproducibility`, one and two threads must give the
same hash on every host. The pins do not make different CPU vendors agree: AMD EPYC machines of this
workbook with AVX2 only and with AVX-512 gave one hash, an Intel Xeon (AVX-512) another under the same
pins. So the hash measured for each CPU vendor is recorded in REFERENCES and checked where a host of that
vendor runs the tests (README, "Reliability and reproducibility").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

# sha256 of every weight after one epoch of each model (see FINGERPRINT), first 16 hex digits, by CPU vendor
REFERENCES = {
    "AuthenticAMD": {"teacher": "b61db24103360d64", "student": "2453d112792cf9d9"},  # EPYC, AVX2 and AVX-512
    "GenuineIntel": {"teacher": "6972749fa04e9370", "student": "1efdacbac74ece26"},  # Xeon, AVX-512
}


def cpu_vendor() -> str:
    """The CPU vendor, from /proc/cpuinfo (Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("vendor_id")),
                "unknown")


FINGERPRINT = """
import hashlib, sys
import torch
from kdlib.core import params as P
from kdlib.core.data import load_dataset
from kdlib.kd.losses import build_objective
from kdlib.snn.teachers import build_teacher
from kdlib.snn.students import build_student
from kdlib.kd.distill import distill
from kdlib.snn.teachers import train_teacher

torch.set_num_threads(int(sys.argv[1]))
def digest(module):
    h = hashlib.sha256()
    for value in module.state_dict().values():
        h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
ds = load_dataset("mnist-5k")
teacher_cfg = P.quick_section("teacher", hidden=[256, 256], dropout=0.2, epochs=1, batch_size=100, lr=1e-3,
                              max_shift=1, seed=0)
teacher = build_teacher(teacher_cfg)
train_teacher(teacher, ds, teacher_cfg)
student_cfg = P.quick_section("student", hidden=[128, 128], neuron="lif", encoding="direct", steps=4, tau_mem=2.0,
                              v_th=1.0, epochs=1, batch_size=100, lr=5e-3, weight_decay=0.0, max_shift=0)
variant = P.KDVariant(loss="kd", alpha=0.9, tau_teacher=4.0, tau_student=1.0)
student = build_student(student_cfg, 10, seed=0)
objective = build_objective(variant, student_cfg.steps, student.layer_widths(), teacher.hidden_widths())
distill(student, objective, ds, student_cfg, seed=0, teacher=teacher)
print("fingerprint", "teacher", digest(teacher))
print("fingerprint", "student", digest(student))
"""


def fingerprint(threads: int, env: dict[str, str] | None = None) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-c", FINGERPRINT, str(threads)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("fingerprint "))


@pytest.fixture(scope="module")
def one_thread() -> dict[str, str]:
    return fingerprint(1)


def test_one_and_two_threads_train_the_same_weights(one_thread: dict[str, str]) -> None:
    assert fingerprint(2) == one_thread, "with the pins, the thread count changed the trained weights"


def test_this_cpu_vendor_reproduces_its_recorded_weights(one_thread: dict[str, str]) -> None:
    vendor = cpu_vendor()
    if vendor not in REFERENCES:
        pytest.skip(f"no weights recorded for this CPU vendor {vendor!r}; this one trains {one_thread}")
    assert one_thread == REFERENCES[vendor], (
        f"this {vendor} host trains different weights than the ones recorded for its vendor "
        f"({one_thread} != {REFERENCES[vendor]}): a dependency or kdlib changed the numbers")


def test_without_the_pins_the_numbers_change(one_thread: dict[str, str]) -> None:
    """The control: the pins are in force (unpinned, the widest code paths and MKL's thread split apply)."""
    import os

    from kdlib.core.reproducibility import PINS

    unpinned = {k: v for k, v in os.environ.items() if k not in PINS}
    got = fingerprint(2, unpinned | {"KDLIB_PIN_NUMERICS": "0"})
    if got == one_thread:
        pytest.skip("on this host the unpinned code paths happen to round as the pinned ones")
    assert got["teacher"] != one_thread["teacher"]
