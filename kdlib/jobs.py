"""The distillation stage's jobs: the student of one variant trained, evaluated and saved once per seed.

:func:`distill_seeds` runs the seeds of one ``(dataset, variant)`` in parallel worker processes on a
multi-core CPU, one training thread each (:func:`parallel_workers` says how many); a student's numbers do
not depend on how many run side by side (:mod:`kdlib.reproducibility`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdlib.analysis import evaluate
from kdlib.data import load_dataset
from kdlib.distill import distill
from kdlib.losses import build_objective
from kdlib.models import load_teacher
from kdlib.students import build_student, save_student
from kdlib.train import accuracy, default_device, predict


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
        ev = evaluate(net, ds.test, cfg.steps, encoding=cfg.encoding, seed=seed, chunk_size=1000)
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
