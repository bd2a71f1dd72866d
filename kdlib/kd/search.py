"""The search over a variant's settings: where a study is stored, the sampler that proposes its trials, the pruner
that stops them early, and the values a trial draws from ``tune.space``.

The stage that runs the studies is :mod:`kdlib.stages.tune`; the report reads the stored studies back
(:mod:`kdlib.report.studies`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdlib.core import params as P

if TYPE_CHECKING:
    import optuna


class StorageError(RuntimeError):
    """A study's storage cannot be opened."""


def open_storage(storage: str | Path) -> optuna.storages.BaseStorage:
    """A journal file (a path) or a database shared by several machines (a URL with ``://``)."""
    import optuna

    text = str(storage)
    try:
        if "://" in text:
            with warnings.catch_warnings():  # the heartbeat (stale trials of a dead machine failed) is experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(text, heartbeat_interval=60, grace_period=180)
        Path(text).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(text))
    except Exception as err:  # noqa: BLE001  (SQLAlchemy and the drivers raise many kinds)
        raise StorageError(f"--storage {text}: cannot open it ({type(err).__name__}: {err}); give a writable "
                           "journal file path or a database URL such as postgresql://user:password@host/db or "
                           "sqlite:///study.db") from None


def sampler(cfg: P.TuneParams, number: int) -> optuna.samplers.BaseSampler:
    """The TPE sampler that proposes trial ``number``: seeded from ``tune.seed`` and the trial's number, so that
    a trial's proposal depends on the history it sees, not on how many were asked before it in this process."""
    import optuna

    return optuna.samplers.TPESampler(n_startup_trials=cfg.startup_trials, seed=cfg.seed * 100_003 + number)


def pruner(cfg: P.TuneParams) -> optuna.pruners.BasePruner:
    """A median pruner: from epoch ``prune_after`` on, once ``startup_trials`` trials have finished."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=max(cfg.startup_trials, 1),
                                       n_warmup_steps=cfg.prune_after + 1)  # steps are epochs, from 1


def suggest(trial: optuna.trial.Trial, space: dict[str, list[Any]]) -> dict[str, float]:
    """The values of one trial, drawn from ``space`` (``tune.space.<variant>``)."""
    values = {}
    for key, value in space.items():
        low, high, log = P.search_range(value, f"tune.space.{key}")
        values[key] = trial.suggest_float(key, low, high, log=log)
    return values
