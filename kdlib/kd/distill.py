"""Distillation: a spiking student trained with a variant's objective against a teacher.

:func:`distill` gives :func:`kdlib.core.train.fit` the student's loss: the student runs on the encoded batch,
and the objective (:mod:`kdlib.kd.losses`) compares its output with the labels and, for the KD variants, with
the teacher's output. A frozen teacher's outputs are computed once (:func:`teacher_targets`) and looked up
by image index; a teacher that the objective fine-tunes runs on every batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdlib.core.data import Batch, Dataset, Encoding, Split, batches, encode
from kdlib.core.train import FitResult, default_device, fit
from kdlib.kd.losses import Objective
from kdlib.snn.students import SpikingOutput, Student
from kdlib.snn.teachers import ModelOutput


@torch.no_grad()
def teacher_targets(teacher: nn.Module, split: Split, layers: Sequence[int], batch_size: int = 1000,
                    device: torch.device | None = None) -> ModelOutput:
    """The frozen teacher's logits and the listed hidden layers' activations for a whole split, computed
    once (in bounded chunks) and kept on the CPU; other layers are left empty."""
    device = device or default_device()
    teacher.eval().to(device)
    logits, feats = [], {layer: [] for layer in layers}
    for b in batches(split, batch_size):
        out = teacher(b.x.to(device))
        logits.append(out.logits.cpu())
        for layer in layers:
            feats[layer].append(out.features[layer].cpu())
    n_layers = max(layers, default=-1) + 1
    features = [torch.cat(feats[i]) if i in feats else torch.empty(0) for i in range(n_layers)]
    return ModelOutput(torch.cat(logits), features)


def run_student(student: Student, x: Tensor, steps: int, encoding: Encoding,
                generator: torch.Generator | None = None) -> SpikingOutput:
    """Encode a batch of images into ``steps`` time steps and run the student on it."""
    return student(encode(x, steps, encoding, generator))


def uses_cached_targets(objective: Objective, cfg: Any) -> bool:
    """Whether :func:`distill` trains with a frozen teacher's outputs computed once (:func:`teacher_targets`)
    rather than with none, or with a teacher that runs on every batch (fine-tuned, or shown shifted images)."""
    return objective.uses_teacher and not objective.trains_teacher and cfg.max_shift == 0


def distill(student: Student, objective: Objective, data: Dataset, cfg: Any, *, seed: int,
            teacher: nn.Module | None = None, teacher_lr: float | None = None, targets: ModelOutput | None = None,
            device: torch.device | None = None, resume_path: str | Path | None = None,
            on_epoch: Callable[[int, float], None] | None = None) -> FitResult:
    """Train a spiking student with a variant's objective (``cfg``: :class:`kdlib.core.params.StudentParams`).

    A frozen teacher's outputs on the training set are computed once, before the first epoch, and
    looked up by image index afterwards (``targets``: those outputs, already computed by the caller), unless
    training images are randomly shifted (``cfg.max_shift``): then the teacher sees each shifted batch. A
    teacher that the objective fine-tunes (``objective.trains_teacher``) runs on every batch and is optimised
    at ``teacher_lr``. ``on_epoch`` is :func:`kdlib.core.train.fit`'s (a tuning trial's report and pruning).
    """
    device = device or default_device()
    if objective.uses_teacher and teacher is None:
        raise ValueError(f"{type(objective).__name__} needs a teacher")
    cached = None
    live_teacher = objective.trains_teacher or (objective.uses_teacher and cfg.max_shift > 0)
    if teacher is not None:
        teacher.eval().to(device)  # fit() switches it to training mode only if it is fine-tuned
    if uses_cached_targets(objective, cfg):
        cached = targets or teacher_targets(teacher, data.train, objective.feature_layers, device=device)
    encode_gen = torch.Generator(device=device).manual_seed(seed) if cfg.encoding == "rate" else None
    modules = nn.ModuleDict({"student": student, "objective": objective})
    groups = None
    if objective.trains_teacher:
        modules["teacher"] = teacher
        groups = [{"params": [*student.parameters(), *objective.parameters()]},
                  {"params": list(teacher.parameters()), "lr": teacher_lr}]

    def loss_fn(batch: Batch) -> tuple[Tensor, Tensor]:
        out = run_student(student, batch.x, cfg.steps, cfg.encoding, encode_gen)
        targets = None
        if live_teacher:
            with torch.set_grad_enabled(objective.trains_teacher):
                t_out = teacher(batch.x)
            targets = t_out
        elif cached is not None:
            idx = batch.index
            targets = ModelOutput(cached.logits[idx].to(device),
                                  [f[idx].to(device) if f.numel() else f for f in cached.features])
        loss, _ = objective(out, batch.y, targets)
        return loss, out.logits

    def predict_fn(x: Tensor) -> Tensor:
        gen = torch.Generator(device=x.device).manual_seed(seed) if cfg.encoding == "rate" else None
        return run_student(student, x, cfg.steps, cfg.encoding, gen).logits

    return fit(modules, data, loss_fn, predict_fn, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
               weight_decay=cfg.weight_decay, seed=seed, max_shift=cfg.max_shift, param_groups=groups,
               resume_path=resume_path, on_epoch=on_epoch,
               desc=f"student {data.name}", device=device)
