"""The distillation stage's jobs: the student of one variant trained, evaluated and saved once per seed.

:func:`distill_seeds` runs the seeds of one ``(dataset, variant)`` in parallel worker processes on a
multi-core CPU, one training thread each (:func:`parallel_workers` says how many); a student's numbers do
not depend on how many run side by side (:mod:`kdlib.reproducibility`).

The workers fork from a server process that imports what they run once (:data:`WORKER_MODULES`, several
seconds); :func:`start_workers` starts it early, so that those imports run on another core while the caller
does its own. Importing this module costs next to nothing for that reason: torch and the training code are
imported where they are used.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# What a seed worker runs (distill_seed's imports), imported once by the server process the workers fork from
WORKER_MODULES = ("kdlib.analysis", "kdlib.data", "kdlib.distill", "kdlib.losses", "kdlib.models",
                  "kdlib.students", "kdlib.train")


@dataclass
class SeedRun:
    """One student of a distillation run: its metrics (as saved in its checkpoint) and its training history."""

    metrics: dict[str, Any]
    history: list[dict[str, float]]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU kernels on one thread inside the block."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def distill_seed(dataset: str, data_cfg: Any, cfg: Any, variant_name: str, spec: Any, seed: int, *,
                 teacher_path: str | Path, checkpoint: str | Path, targets_path: str | Path | None = None,
                 device: torch.device | None = None) -> SeedRun:
    """Train, evaluate and save the student of one variant from one seed.

    ``data_cfg``, ``cfg`` and ``spec`` are the validated ``data``, ``student`` and variant sections. The
    teacher is loaded afresh from ``teacher_path`` (bidirectional KD fine-tunes it); ``targets_path``, if
    given, holds its outputs on the training split (:func:`write_teacher_targets`), mapped instead of computed.
    The selected student is evaluated on the test set (accuracy, spikes and synaptic operations per image) and
    written to ``checkpoint`` with its metrics and, when fine-tuned, the teacher.

    On the CPU the student trains on one thread, so that the seeds of a run can train side by side, one per
    core (:func:`distill_seeds`); its numbers do not depend on that (:mod:`kdlib.reproducibility`).
    """
    from kdlib.analysis import evaluate
    from kdlib.data import load_dataset
    from kdlib.distill import distill
    from kdlib.io import load_torch
    from kdlib.losses import build_objective
    from kdlib.models import ModelOutput, load_teacher
    from kdlib.students import build_student, save_student
    from kdlib.train import accuracy, default_device, predict

    device = device or default_device()
    with one_thread() if device.type == "cpu" else contextlib.nullcontext():
        ds = load_dataset(dataset, val_size=data_cfg.val_size, split_seed=data_cfg.split_seed)
        teacher, _ = load_teacher(teacher_path)
        net = build_student(cfg, ds.num_classes, seed)
        objective = build_objective(spec, cfg.steps, net.layer_widths(), teacher.hidden_widths())
        targets = None
        if targets_path is not None:
            saved = load_torch(targets_path, mmap=True)
            targets = ModelOutput(saved["logits"], saved["features"])
        result = distill(net, objective, ds, cfg, seed=seed, teacher=teacher, targets=targets,
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
    from kdlib.train import default_device

    cores = _cores()
    if (device or default_device()).type != "cpu" or cores < 2:
        return 1
    return max(1, min(jobs, cores + 1))


def _cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def write_teacher_targets(dataset: str, data_cfg: Any, cfg: Any, spec: Any, teacher_path: str | Path,
                          path: Path) -> Path | None:
    """Write the frozen teacher's outputs on the training split that the variant ``spec`` trains against
    (:func:`kdlib.distill.teacher_targets`: logits and the hidden layers its objective reads) to ``path``,
    once for all seeds of a run; None, and nothing written, where the variant needs none or runs its teacher
    on every batch.

    The seed workers map the file (:func:`distill_seed`'s ``targets_path``), so they share one copy instead of
    each computing the teacher's pass on one thread and holding its own (the hidden layers of the whole
    training split are about 260 MB a layer). The outputs are the same bits either way: the teacher's
    products do not depend on the thread count (:mod:`kdlib.reproducibility`).
    """
    from kdlib.data import load_dataset
    from kdlib.distill import teacher_targets, uses_cached_targets
    from kdlib.io import save_torch
    from kdlib.losses import build_objective
    from kdlib.models import load_teacher
    from kdlib.students import build_student

    ds = load_dataset(dataset, val_size=data_cfg.val_size, split_seed=data_cfg.split_seed)
    teacher, _ = load_teacher(teacher_path)
    objective = build_objective(spec, cfg.steps, build_student(cfg, ds.num_classes).layer_widths(),
                                teacher.hidden_widths())
    if not uses_cached_targets(objective, cfg):
        return None
    targets = teacher_targets(teacher, ds.train, objective.feature_layers)
    save_torch(path, {"logits": targets.logits, "features": targets.features})
    return path


def start_workers() -> multiprocessing.context.BaseContext:
    """Start the server process that :func:`distill_seeds`'s workers fork from, if it is not running, and return
    its multiprocessing context.

    The server imports :data:`WORKER_MODULES` (kdlib and torch) once, before any thread or CUDA state exists,
    and every worker forks from it ready to train, instead of importing for seconds. Called at the top of a
    notebook, before its own imports, it lets the server's imports run on another core meanwhile; on a single
    core, where the seeds train one after the other, it starts nothing.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, *WORKER_MODULES])
    if _cores() > 1:
        forkserver.ensure_running()
    return context


def distill_seeds(dataset: str, data_cfg: Any, cfg: Any, variant_name: str, spec: Any, seeds: Sequence[int], *,
                  teacher_path: str | Path, checkpoint: Callable[[int], Path], workers: int | None = None,
                  device: torch.device | None = None) -> list[SeedRun]:
    """:func:`distill_seed` for every seed (``checkpoint(seed)``: where its student goes), in seed order.

    With more than one worker (default: :func:`parallel_workers`), the seeds train in worker processes;
    a student's numbers are the same either way, since it always trains on one CPU thread.
    """
    from kdlib.train import default_device

    device = device or default_device()
    workers = parallel_workers(len(seeds), device) if workers is None else workers
    args = [(dataset, data_cfg, cfg, variant_name, spec, seed) for seed in seeds]
    if workers <= 1 or len(seeds) <= 1:
        return [distill_seed(*a, teacher_path=teacher_path, checkpoint=checkpoint(a[-1]), device=device)
                for a in args]
    context = start_workers()
    with tempfile.TemporaryDirectory(prefix="kdlib-targets-") as folder:
        targets = write_teacher_targets(dataset, data_cfg, cfg, spec, teacher_path, Path(folder) / "targets.pt")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(distill_seed, *a, teacher_path=teacher_path, checkpoint=checkpoint(a[-1]),
                                   targets_path=targets, device=device) for a in args]
            return [f.result() for f in futures]
