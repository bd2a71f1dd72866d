"""The study's numbers do not depend on the host's instruction set or on the thread count.

A small real run (a teacher and a distilled LIF student, one epoch each on mnist-5k) is fingerprinted by
a hash of its weights; the hash committed here came from the AMD EPYC (AVX2, no AVX-512) machine of this
workbook with the pins of :mod:`kdlib.reproducibility`. Every machine that runs the tests checks that it
reproduces it, on one thread and on two. A mismatch means this host computes different numbers from the
committed results: the README says what that implies and how large the spread was where it was measured.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

# sha256 of every weight after one epoch of each model (see FINGERPRINT), first 16 hex digits
REFERENCE = {"teacher": "b61db24103360d64", "student": "2453d112792cf9d9"}

FINGERPRINT = """
import hashlib, sys
import torch
from kdlib import params as P
from kdlib.data import load_dataset
from kdlib.losses import build_objective
from kdlib.models import build_teacher
from kdlib.students import build_student
from kdlib.train import distill, train_teacher

torch.set_num_threads(int(sys.argv[1]))
def digest(module):
    h = hashlib.sha256()
    for value in module.state_dict().values():
        h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
ds = load_dataset("mnist-5k")
teacher_cfg = P.validate(P.TeacherParams, {"hidden": [256, 256], "epochs": 1, "batch_size": 100, "max_shift": 1})
teacher = build_teacher(teacher_cfg)
train_teacher(teacher, ds, teacher_cfg)
student_cfg = P.validate(P.StudentParams, {"hidden": [128, 128], "steps": 4, "epochs": 1, "batch_size": 100,
                                           "lr": 5e-3})
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


@pytest.mark.parametrize("threads", [1, 2])
def test_a_small_run_reproduces_the_committed_weights(threads: int) -> None:
    got = fingerprint(threads)
    assert got == REFERENCE, (
        f"this host trains different weights than the committed reference host ({got} != {REFERENCE}): "
        "its results will differ from the committed ones in the last bits, and over epochs more (README, "
        "'Reproducibility')")


def test_without_the_pins_two_threads_train_other_weights() -> None:
    """The control: the pins are what makes the thread count irrelevant (MKL splits products between threads)."""
    import os

    from kdlib.reproducibility import PINS

    unpinned = {k: v for k, v in os.environ.items() if k not in PINS}
    got = fingerprint(2, unpinned | {"KDLIB_PIN_NUMERICS": "0"})
    if got == REFERENCE:
        pytest.skip("on this host MKL happens to split no product between two threads")
    assert got["teacher"] != REFERENCE["teacher"]
