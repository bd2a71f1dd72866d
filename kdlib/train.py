"""The one training loop of the workbook.

:func:`fit` trains any model with any loss: the caller gives a ``loss_fn`` that maps a batch to
``(loss, logits)`` and a ``predict_fn`` that maps a batch of images to logits for evaluation. The
loop is seeded and deterministic on CPU, picks CUDA when present, selects the epoch with the best
validation accuracy, and can resume from its last complete epoch.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from kdlib.data import Dataset, Split, batches, random_shift
from kdlib.io import save_torch

LossFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
PredictFn = Callable[[Tensor], Tensor]


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed torch's global generator and make CPU kernels deterministic."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))


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
    return torch.cat([predict_fn(x.to(device)).float().cpu() for x, _ in batches(split, batch_size)])


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
    extras: dict[str, Any] = field(default_factory=dict)


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
    desc: str = "train",
    device: torch.device | None = None,
) -> FitResult:
    """Train ``modules`` (every trainable parameter in it) with Adam and a cosine schedule.

    After training, ``modules`` holds the weights of the epoch with the best validation accuracy
    (the earliest on ties). With ``resume_path``, the complete state is written there atomically
    after every epoch and training continues from it when the file exists.
    """
    device = device or default_device()
    seed_everything(seed)
    modules.to(device)
    params = [p for p in modules.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(data.train) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, Tensor]] = (-1.0, -1, {})
    start_epoch, seconds = 0, 0.0

    if resume_path is not None and Path(resume_path).is_file():
        state = torch.load(resume_path, map_location=device, weights_only=False)
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
        for x, y in batches(data.train, batch_size, shuffle=True, generator=gen):
            x = random_shift(x, max_shift, gen).to(device)
            y = y.to(device)
            loss, logits = loss_fn(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        seconds += time.perf_counter() - tic
        modules.eval()
        val_acc = accuracy(predict(predict_fn, data.val, eval_batch_size, device), data.val.y)
        history.append({
            "epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
            "val_accuracy": val_acc, "lr": scheduler.get_last_lr()[0], "seconds": seconds,
        })
        if val_acc > best[0]:
            best = (val_acc, epoch + 1, copy.deepcopy(modules.state_dict()))
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", val_acc=f"{val_acc:.4f}", refresh=False)
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


def train_teacher(model: nn.Module, data: Dataset, cfg: Any, device: torch.device | None = None) -> FitResult:
    """Train an ANN teacher with cross-entropy (``cfg`` is a :class:`kdlib.params.TeacherParams`)."""

    def loss_fn(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = model(x).logits
        return nn.functional.cross_entropy(logits, y), logits

    return fit(
        model, data, loss_fn, lambda x: model(x).logits, epochs=cfg.epochs, batch_size=cfg.batch_size,
        lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed, max_shift=cfg.max_shift,
        desc=f"teacher {data.name}", device=device,
    )
