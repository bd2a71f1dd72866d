"""The one training loop of the workbook.

:func:`fit` trains any model with any loss: the caller gives a ``loss_fn`` that maps a batch to
``(loss, logits)`` and a ``predict_fn`` that maps a batch of images to logits for evaluation. The
loop is seeded and deterministic on CPU, picks CUDA when present, selects the epoch with the best
validation accuracy, and can resume from its last complete epoch.

:func:`distill_seeds` is one distillation run of the pipeline: the student of one variant trained,
evaluated and saved once per seed, the seeds in parallel worker processes on a multi-core CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from kdlib.data import Batch, Dataset, Encoding, Split, batches, encode, load_dataset, random_shift
from kdlib.io import load_torch, save_torch
from kdlib.losses import Objective, build_objective
from kdlib.models import ModelOutput, load_teacher
from kdlib.spikes import SpikeCounter
from kdlib.students import SpikingOutput, Student, build_student, save_student

LossFn = Callable[[Batch], tuple[Tensor, Tensor]]
PredictFn = Callable[[Tensor], Tensor]


class TrainingDiverged(RuntimeError):
    """The loss or a weight became NaN or infinite; training stopped before anything was written."""


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    desc: str = "train",
    device: torch.device | None = None,
) -> FitResult:
    """Train ``modules`` (every trainable parameter in it) with Adam and a cosine schedule.

    ``loss_fn`` maps a :class:`~kdlib.data.Batch` (augmented images and labels on the device, the
    rows' indices in the training split) to ``(loss, logits)``; ``predict_fn`` maps images to logits.
    ``param_groups`` optionally gives Adam's parameter groups (for per-module learning rates).

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

    def loss_fn(batch: Batch) -> tuple[Tensor, Tensor]:
        logits = model(batch.x).logits
        return nn.functional.cross_entropy(logits, batch.y), logits

    return fit(
        model, data, loss_fn, lambda x: model(x).logits, epochs=cfg.epochs, batch_size=cfg.batch_size,
        lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed, max_shift=cfg.max_shift,
        desc=f"teacher {data.name}", device=device,
    )


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


def distill(student: Student, objective: Objective, data: Dataset, cfg: Any, *, seed: int,
            teacher: nn.Module | None = None, teacher_lr: float | None = None,
            device: torch.device | None = None, resume_path: str | Path | None = None) -> FitResult:
    """Train a spiking student with a variant's objective (``cfg``: :class:`kdlib.params.StudentParams`).

    A frozen teacher's outputs on the training set are computed once, before the first epoch, and
    looked up by image index afterwards, unless training images are randomly shifted
    (``cfg.max_shift``): then the teacher sees each shifted batch. A teacher that the objective
    fine-tunes (``objective.trains_teacher``) runs on every batch and is optimised at ``teacher_lr``.
    """
    device = device or default_device()
    if objective.uses_teacher and teacher is None:
        raise ValueError(f"{type(objective).__name__} needs a teacher")
    cached = None
    live_teacher = objective.trains_teacher or (objective.uses_teacher and cfg.max_shift > 0)
    if teacher is not None:
        teacher.eval().to(device)  # fit() switches it to training mode only if it is fine-tuned
    if objective.uses_teacher and not live_teacher:
        cached = teacher_targets(teacher, data.train, objective.feature_layers, device=device)
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
               resume_path=resume_path,
               desc=f"student {data.name}", device=device)


@dataclass
class StudentEvaluation:
    """A student's accuracy on a split, its logits, and spikes and synaptic operations per image."""

    accuracy: float
    logits: Tensor
    spikes_per_image: dict[str, float]
    synops_per_image: float


@torch.no_grad()
def evaluate_student(student: Student, split: Split, cfg: Any, *, seed: int = 0, batch_size: int = 1000,
                     device: torch.device | None = None) -> StudentEvaluation:
    """Run a student over a split in chunks; count spikes by layer and synaptic operations
    (:class:`kdlib.spikes.SpikeCounter`: spikes × fan-out, plus input spikes × the first layer's fan-out
    when the input is rate-coded)."""
    device = device or default_device()
    student.eval().to(device)
    rate = cfg.encoding == "rate"
    gen = torch.Generator(device=device).manual_seed(seed) if rate else None
    counter = SpikeCounter(student.fan_outs(), input_fan_out=student.input_fan_out() if rate else 0)
    logits = []
    for b in batches(split, batch_size):
        x_seq = encode(b.x.to(device), cfg.steps, cfg.encoding, gen)
        out = student(x_seq)
        logits.append(out.logits.float().cpu())
        counter.update(out, input_spikes=x_seq if rate else None)
    logits_all = torch.cat(logits)
    spikes = {name: round(count, 3) for name, count in counter.spikes_per_image().items()}
    return StudentEvaluation(accuracy(logits_all, split.y), logits_all, spikes, round(counter.synops_per_image(), 1))


@dataclass
class SeedRun:
    """One student of a distillation run: its metrics (as saved in its checkpoint) and its training history."""

    metrics: dict[str, Any]
    history: list[dict[str, float]]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU kernels on one thread inside the block."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def distill_seed(dataset: str, data_cfg: Any, cfg: Any, variant_name: str, spec: Any, seed: int, *,
                 teacher_path: str | Path, checkpoint: str | Path, device: torch.device | None = None) -> SeedRun:
    """Train, evaluate and save the student of one variant from one seed.

    ``data_cfg``, ``cfg`` and ``spec`` are the validated ``data``, ``student`` and variant sections. The
    teacher is loaded afresh from ``teacher_path`` (bidirectional KD fine-tunes it). The selected student is
    evaluated on the test set (accuracy, spikes and synaptic operations per image) and written to
    ``checkpoint`` with its metrics and, when fine-tuned, the teacher.

    On the CPU the student trains on one thread, so that the seeds of a run can train side by side, one per
    core (:func:`distill_seeds`); its numbers do not depend on that (:mod:`kdlib.reproducibility`).
    """
    device = device or default_device()
    with one_thread() if device.type == "cpu" else contextlib.nullcontext():
        ds = load_dataset(dataset, val_size=data_cfg.val_size, split_seed=data_cfg.split_seed)
        teacher, _ = load_teacher(teacher_path)
        net = build_student(cfg, ds.num_classes, seed)
        objective = build_objective(spec, cfg.steps, net.layer_widths(), teacher.hidden_widths())
        result = distill(net, objective, ds, cfg, seed=seed, teacher=teacher,
                         teacher_lr=getattr(spec, "teacher_lr", None), device=device)
        ev = evaluate_student(net, ds.test, cfg, seed=seed, device=device)
        metrics: dict[str, Any] = {
            "dataset": dataset, "variant": variant_name, "seed": seed, "steps": cfg.steps,
            "test_accuracy": ev.accuracy, "val_accuracy": result.best_val_accuracy,
            "best_epoch": result.best_epoch, "epochs": cfg.epochs, "spikes_per_image": ev.spikes_per_image,
            "synops_per_image": ev.synops_per_image, "train_seconds": round(result.train_seconds, 2),
            "train_images_per_second": round(result.images_per_second, 1),
        }
        if objective.trains_teacher:
            teacher_logits = predict(lambda x: teacher(x).logits, ds.test, device=device)
            metrics["finetuned_teacher_test_accuracy"] = accuracy(teacher_logits, ds.test.y)
        save_student(checkpoint, net, cfg, spec, dataset, ds.num_classes, metrics,
                     teacher if objective.trains_teacher else None)
    return SeedRun(metrics, result.history)


def parallel_workers(jobs: int, device: torch.device | None = None) -> int:
    """How many worker processes :func:`distill_seeds` uses for ``jobs`` students by default.

    One on a GPU or a single core. On a CPU with c > 1 cores, up to c + 1 workers (a student trains on one
    thread, see :func:`distill_seed`): one more worker than cores keeps every core busy while a worker
    starts up or evaluates, and three seeds on two cores finish together instead of the third one alone.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if (device or default_device()).type != "cpu" or cores < 2:
        return 1
    return max(1, min(jobs, cores + 1))


def distill_seeds(dataset: str, data_cfg: Any, cfg: Any, variant_name: str, spec: Any, seeds: Sequence[int], *,
                  teacher_path: str | Path, checkpoint: Callable[[int], Path], workers: int | None = None,
                  device: torch.device | None = None) -> list[SeedRun]:
    """:func:`distill_seed` for every seed (``checkpoint(seed)``: where its student goes), in seed order.

    With more than one worker (default: :func:`parallel_workers`), the seeds train in worker processes;
    a student's numbers are the same either way, since it always trains on one CPU thread.
    """
    device = device or default_device()
    workers = parallel_workers(len(seeds), device) if workers is None else workers
    args = [(dataset, data_cfg, cfg, variant_name, spec, seed) for seed in seeds]
    if workers <= 1 or len(seeds) <= 1:
        return [distill_seed(*a, teacher_path=teacher_path, checkpoint=checkpoint(a[-1]), device=device)
                for a in args]
    # Workers fork from a server process that imported kdlib (and torch) once, before any thread or CUDA
    # state existed: they start at once instead of each importing for seconds.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(distill_seed, *a, teacher_path=teacher_path, checkpoint=checkpoint(a[-1]),
                               device=device) for a in args]
        return [f.result() for f in futures]
