"""Worker processes for the stages that train many students: tuning trials, the fronts' points, the seeds.

Each worker trains one student on one thread (:mod:`kdlib.kd.trial`); :func:`parallel_workers` says how many
run side by side, and :func:`distill_seeds` runs the seeds of one ``(dataset, variant)`` of the distillation
stage. A student's numbers do not depend on how many run side by side (:mod:`kdlib.core.reproducibility`).

The workers fork from a server process that imports what they run once (:data:`WORKER_MODULES`, several
seconds); :func:`start_workers` starts it early, so that those imports run on another core while the caller
does its own. Importing this module costs next to nothing for that reason: torch and the training code are
imported where they are used.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from kdlib.kd.trial import SeedRun

# What a worker runs (kdlib.kd.trial and its imports), imported once by the server process the workers fork from
WORKER_MODULES = ("kdlib.kd.trial", "kdlib.measure.analysis", "kdlib.core.data", "kdlib.kd.distill",
                  "kdlib.kd.losses", "kdlib.snn.teachers", "kdlib.snn.students", "kdlib.core.train")


def parallel_workers(jobs: int, device: torch.device | None = None) -> int:
    """How many worker processes :func:`distill_seeds` uses for ``jobs`` students by default.

    One on a GPU or a single core. On a CPU with c > 1 cores, up to c + 1 workers (a student trains on one
    thread, see :mod:`kdlib.kd.trial`): one more worker than cores keeps every core busy while a worker
    starts up or evaluates, and three seeds on two cores finish together instead of the third one alone.
    """
    from kdlib.core.train import default_device

    cores = _cores()
    if (device or default_device()).type != "cpu" or cores < 2:
        return 1
    return max(1, min(jobs, cores + 1))


def _cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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
    """:func:`kdlib.kd.trial.distill_seed` for every seed (``checkpoint(seed)``: where its student goes), in seed
    order.

    With more than one worker (default: :func:`parallel_workers`), the seeds train in worker processes;
    a student's numbers are the same either way, since it always trains on one CPU thread.
    """
    from kdlib.core.train import default_device
    from kdlib.kd.trial import distill_seed, write_teacher_targets

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
