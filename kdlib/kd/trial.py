"""One student trained from one setting: a tuning trial (scored on validation) or a final seed (tested and saved).

Both start the same way (:func:`prepare`): the dataset, the teacher loaded afresh (bidirectional KD fine-tunes
it), the student built from its seed, the variant's objective, and the teacher's outputs on the training split
mapped from a file that :func:`write_teacher_targets` wrote once for every worker. On the CPU both train on one
thread (:func:`kdlib.core.train.one_thread`), so that several can train side by side, one per core; a student's
numbers do not depend on that (:mod:`kdlib.core.reproducibility`). The stages run them in worker processes
(:mod:`kdlib.stages.workers`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from kdlib.core.data import Dataset
    from kdlib.kd.losses import Objective
    from kdlib.snn.students import Student
    from kdlib.snn.teachers import ModelOutput


@cache
def _dataset(dataset: str, val_size: int | None, split_seed: int) -> Dataset:
    """The dataset, loaded once per process for all the students it trains."""
    from kdlib.core.data import load_dataset

    return load_dataset(dataset, val_size=val_size, split_seed=split_seed)


@dataclass
class Prepared:
    """What a student's training starts from."""

    data: Dataset
    teacher: torch.nn.Module
    student: Student
    objective: Objective
    targets: ModelOutput | None  # the teacher's outputs on the training split, where they were written once


def prepare(dataset: str, data_cfg: Any, cfg: Any, spec: Any, seed: int, *, teacher_path: str | Path,
            targets_path: str | Path | None = None) -> Prepared:
    """The dataset, the teacher of ``teacher_path``, the student of ``cfg`` built from ``seed``, the objective of the
    variant ``spec`` and, if ``targets_path`` is given, the teacher's outputs mapped from it."""
    from kdlib.core.io import load_torch
    from kdlib.kd.losses import build_objective
    from kdlib.snn.students import build_student
    from kdlib.snn.teachers import ModelOutput, load_teacher

    ds = _dataset(dataset, data_cfg.val_size, data_cfg.split_seed)
    teacher, _ = load_teacher(teacher_path)
    net = build_student(cfg, ds.num_classes, seed)
    objective = build_objective(spec, cfg.steps, net.layer_widths(), teacher.hidden_widths())
    targets = None
    if targets_path is not None:
        saved = load_torch(targets_path, mmap=True)
        targets = ModelOutput(saved["logits"], saved["features"])
    return Prepared(ds, teacher, net, objective, targets)


def write_teacher_targets(dataset: str, data_cfg: Any, cfg: Any, spec: Any, teacher_path: str | Path,
                          path: Path) -> Path | None:
    """Write the frozen teacher's outputs on the training split that the variant ``spec`` trains against
    (:func:`kdlib.kd.distill.teacher_targets`: logits and the hidden layers its objective reads) to ``path``,
    once for all the students of a run; None, and nothing written, where the variant needs none or runs its
    teacher on every batch.

    The workers map the file (``targets_path`` of :func:`prepare`), so they share one copy instead of each
    computing the teacher's pass on one thread and holding its own (the hidden layers of the whole training
    split are about 260 MB a layer). The outputs are the same bits either way: the teacher's products do not
    depend on the thread count (:mod:`kdlib.core.reproducibility`).
    """
    from kdlib.core.data import load_dataset
    from kdlib.core.io import save_torch
    from kdlib.kd.distill import teacher_targets, uses_cached_targets
    from kdlib.kd.losses import build_objective
    from kdlib.snn.students import build_student
    from kdlib.snn.teachers import load_teacher

    ds = load_dataset(dataset, val_size=data_cfg.val_size, split_seed=data_cfg.split_seed)
    teacher, _ = load_teacher(teacher_path)
    objective = build_objective(spec, cfg.steps, build_student(cfg, ds.num_classes).layer_widths(),
                                teacher.hidden_widths())
    if not uses_cached_targets(objective, cfg):
        return None
    targets = teacher_targets(teacher, ds.train, objective.feature_layers)
    save_torch(path, {"logits": targets.logits, "features": targets.features})
    return path


# ------------------------------------------------------------------------------------------------ a trial
@dataclass
class TrialResult:
    """What a tuning trial (or a point of a front) returns."""

    val_accuracy: float  # the best epoch's
    spikes_per_image: float  # hidden spikes per validation image, at the best epoch's weights
    epochs: int  # epochs trained (fewer when pruned)
    seconds: float
    pruned: bool = False
    diverged: str = ""  # the divergence message, when training diverged


def train_trial(dataset: str, data_cfg: Any, cfg: Any, spec: Any, seed: int, *, teacher_path: str | Path,
                targets_path: str | Path | None, on_epoch: Callable[[int, float], None] | None = None) -> TrialResult:
    """Train the student of ``spec`` (the variant with the trial's values) for ``cfg.epochs`` and score it on the
    validation split (the test split is not read); ``on_epoch`` reports each epoch and may raise
    ``optuna.TrialPruned``."""
    import optuna
    import torch

    from kdlib.core.train import TrainingDiverged, one_thread
    from kdlib.kd.distill import distill
    from kdlib.measure.analysis import chunk_size_for, evaluate

    tic = time.perf_counter()
    epochs_seen: list[float] = []

    def report(epoch: int, accuracy: float) -> None:
        epochs_seen.append(accuracy)
        if on_epoch is not None:
            on_epoch(epoch, accuracy)

    device = torch.device("cpu")
    with one_thread():
        run = prepare(dataset, data_cfg, cfg, spec, seed, teacher_path=teacher_path, targets_path=targets_path)
        try:
            fit = distill(run.student, run.objective, run.data, cfg, seed=seed, teacher=run.teacher,
                          targets=run.targets, teacher_lr=getattr(spec, "teacher_lr", None), device=device,
                          on_epoch=report)
        except optuna.TrialPruned:
            return TrialResult(max(epochs_seen), math.nan, len(epochs_seen), time.perf_counter() - tic, pruned=True)
        except TrainingDiverged as err:
            return TrialResult(max(epochs_seen, default=0.0), math.nan, len(epochs_seen),
                               time.perf_counter() - tic, diverged=str(err))
        ev = evaluate(run.student, run.data.val, cfg.steps, encoding=cfg.encoding, seed=seed,
                      chunk_size=chunk_size_for(run.student, cfg.steps, most=1000))
    return TrialResult(fit.best_val_accuracy, ev.counts.spikes_per_image()["total"], len(fit.history),
                       time.perf_counter() - tic)


# ------------------------------------------------------------------------------------------------ a final seed
@dataclass
class SeedRun:
    """One student of a distillation run: its metrics (as saved in its checkpoint) and its training history."""

    metrics: dict[str, Any]
    history: list[dict[str, float]]


def distill_seed(dataset: str, data_cfg: Any, cfg: Any, variant_name: str, spec: Any, seed: int, *,
                 teacher_path: str | Path, checkpoint: str | Path, targets_path: str | Path | None = None,
                 device: torch.device | None = None) -> SeedRun:
    """Train, evaluate and save the student of one variant from one seed.

    ``data_cfg``, ``cfg`` and ``spec`` are the validated ``data``, ``student`` and variant sections. The selected
    student is evaluated on the test set (accuracy, spikes and synaptic operations per image) and written to
    ``checkpoint`` with its metrics and, when fine-tuned, the teacher.
    """
    from kdlib.core.train import accuracy, default_device, one_thread, predict
    from kdlib.kd.distill import distill
    from kdlib.measure.analysis import chunk_size_for, evaluate
    from kdlib.snn.students import save_student

    device = device or default_device()
    with one_thread() if device.type == "cpu" else contextlib.nullcontext():
        run = prepare(dataset, data_cfg, cfg, spec, seed, teacher_path=teacher_path, targets_path=targets_path)
        ds, net, teacher, objective = run.data, run.student, run.teacher, run.objective
        result = distill(net, objective, ds, cfg, seed=seed, teacher=teacher, targets=run.targets,
                         teacher_lr=getattr(spec, "teacher_lr", None), device=device)
        ev = evaluate(net, ds.test, cfg.steps, encoding=cfg.encoding, seed=seed,
                      chunk_size=chunk_size_for(net, cfg.steps, most=1000))
        metrics: dict[str, Any] = {
            "dataset": dataset, "variant": variant_name, "seed": seed, "steps": cfg.steps,
            "test_accuracy": ev.accuracy, "val_accuracy": result.best_val_accuracy,
            "best_epoch": result.best_epoch, "epochs": cfg.epochs,
            "spikes_per_image": {name: round(n, 3) for name, n in ev.counts.spikes_per_image().items()},
            "synops_per_image": round(ev.counts.synops_per_image(), 1),
            "train_seconds": round(result.train_seconds, 2),
            "train_images_per_second": round(result.images_per_second, 1),
        }
        if objective.trains_teacher:
            teacher_logits = predict(lambda x: teacher(x).logits, ds.test, device=device)
            metrics["finetuned_teacher_test_accuracy"] = accuracy(teacher_logits, ds.test.y)
        save_student(checkpoint, net, cfg, spec, dataset, ds.num_classes, metrics,
                     teacher if objective.trains_teacher else None)
    return SeedRun(metrics, result.history)
