"""The one training loop of the workbook.

:func:`fit` trains any model with any loss: the caller gives a ``loss_fn`` that maps a batch to
``(loss, logits)`` and a ``predict_fn`` that maps a batch of images to logits for evaluation. The
loop is seeded and deterministic on CPU, picks CUDA when present, selects the epoch with the best
validation accuracy, and can resume from its last complete epoch. The teacher's training
(:func:`kdlib.snn.teachers.train_teacher`) and the students' (:func:`kdlib.kd.distill.distill`) are two losses
given to it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from kdlib.core.data import Batch, Dataset, Split, batches, random_shift
from kdlib.core.io import load_torch, save_torch

LossFn = Callable[[Batch], tuple[Tensor, Tensor]]
PredictFn = Callable[[Tensor], Tensor]


class TrainingDiverged(RuntimeError):
    """The loss or a weight became NaN or infinite; training stopped before anything was written."""


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU kernels on one thread inside the block (a student per core, side by side)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    """Seed torch's global generator and make CPU kernels deterministic."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def progress(iterable: Iterable[Any], **kwargs: Any) -> tqdm:
    """A tqdm bar that stays readable in notebooks, papermill outputs and logs."""
    kwargs.setdefault("file", sys.stdout)
    kwargs.setdefault("ascii", True)
    kwargs.setdefault("ncols", 100)
    kwargs.setdefault("mininterval", 5.0)
    return tqdm(iterable, **kwargs)


@torch.no_grad()
def predict(predict_fn: PredictFn, split: Split, batch_size: int = 1000, device: torch.device | None = None) -> Tensor:
    """Logits for a whole split, computed in bounded chunks; returned on the CPU."""
    device = device or default_device()
    return torch.cat([predict_fn(b.x.to(device)).float().cpu() for b in batches(split, batch_size)])


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return (logits.argmax(1) == labels).sum().item() / len(labels)


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch history and the selected (best validation) epoch."""

    history: list[dict[str, float]]
    best_epoch: int
    best_val_accuracy: float
    train_seconds: float
    images_per_second: float


def fit(
    modules: nn.Module,
    data: Dataset,
    loss_fn: LossFn,
    predict_fn: PredictFn,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    seed: int = 0,
    max_shift: int = 0,
    eval_batch_size: int = 1000,
    resume_path: str | Path | None = None,
    param_groups: list[dict[str, Any]] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    desc: str = "train",
    device: torch.device | None = None,
) -> FitResult:
    """Train ``modules`` (every trainable parameter in it) with Adam and a cosine schedule.

    ``loss_fn`` maps a :class:`~kdlib.core.data.Batch` (augmented images and labels on the device, the
    rows' indices in the training split) to ``(loss, logits)``; ``predict_fn`` maps images to logits.
    ``param_groups`` optionally gives Adam's parameter groups (for per-module learning rates). ``on_epoch`` is
    called with the epoch (from 1) and its validation accuracy after every epoch; an exception it raises (a
    tuning trial's pruning) ends training there.

    After training, ``modules`` holds the weights of the epoch with the best validation accuracy
    (the earliest on ties). A loss or weight that turns NaN or infinite raises :class:`TrainingDiverged`
    at once, naming the epoch and the quantity; the resume file then keeps the last finite epoch. With
    ``resume_path``, the complete state is written there atomically after every epoch and training
    continues from it when the file exists.
    """
    device = device or default_device()
    seed_everything(seed)
    modules.to(device)
    groups = param_groups or [{"params": [p for p in modules.parameters() if p.requires_grad]}]
    # the fused kernel: one pass over each parameter instead of a dozen (CPU and CUDA)
    optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, fused=device.type in ("cpu", "cuda"))
    steps_per_epoch = -(-len(data.train) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, Tensor]] = (-1.0, -1, {})
    start_epoch, seconds = 0, 0.0

    if resume_path is not None and Path(resume_path).is_file():
        state = load_torch(resume_path, map_location=device)
        modules.load_state_dict(state["modules"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, best, seconds = state["history"], state["best"], state["seconds"]
        start_epoch = len(history)

    bar = progress(range(start_epoch, epochs), desc=desc, initial=start_epoch, total=epochs, mininterval=0)
    for epoch in bar:
        modules.train()
        tic = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for step, batch in enumerate(batches(data.train, batch_size, shuffle=True, generator=gen), 1):
            x, y = random_shift(batch.x, max_shift, gen).to(device), batch.y.to(device)
            loss, logits = loss_fn(Batch(x, y, batch.index))
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"{desc}: the training loss is {loss_value} at epoch {epoch + 1}, batch "
                                       f"{step}; training stopped and nothing was saved. Lower the learning rate "
                                       f"(lr = {lr:g}) or check the loss's parameters.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss_value * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        seconds += time.perf_counter() - tic
        for name, weight in modules.named_parameters():
            if not bool(torch.isfinite(weight).all()):
                raise TrainingDiverged(f"{desc}: the weight {name} is not finite after epoch {epoch + 1}; "
                                       f"training stopped and nothing was saved. Lower the learning rate "
                                       f"(lr = {lr:g}).")
        modules.eval()
        val_acc = accuracy(predict(predict_fn, data.val, eval_batch_size, device), data.val.y)
        history.append({
            "epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
            "val_accuracy": val_acc, "lr": scheduler.get_last_lr()[0], "seconds": seconds,
        })
        if val_acc > best[0]:
            best = (val_acc, epoch + 1, copy.deepcopy(modules.state_dict()))
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", val_acc=f"{val_acc:.4f}", refresh=False)
        if on_epoch is not None:
            on_epoch(epoch + 1, val_acc)
        if resume_path is not None:
            save_torch(resume_path, {
                "modules": modules.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "history": history, "best": best, "seconds": seconds,
            })
    bar.close()
    modules.load_state_dict(best[2])
    modules.eval()
    return FitResult(
        history=history, best_epoch=best[1], best_val_accuracy=best[0], train_seconds=seconds,
        images_per_second=len(data.train) * epochs / max(seconds, 1e-9),
    )
