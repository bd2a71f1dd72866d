"""Stage ``tune``: every method given the same chance, an Optuna study per dataset and variant.

::

    python -m kdlib.stages.tune mnist kd                       # the pipeline's command (dvc.yaml's tune stage)
    python -m kdlib.stages.tune mnist kd --storage URL         # one of several machines working on one study

A study searches the variant's own hyperparameters and the student's learning rate over the ranges of
``tune.space.<variant>`` in ``params.yaml``. Every variant gets the same budget: ``tune.trials`` trials of
``tune.epochs`` epochs, the student trained from ``tune.seed``, scored by its best validation accuracy (the
test split is never loaded). A seeded TPE sampler proposes the trials and a median pruner stops a trial whose
validation accuracy after an epoch is below the median of the finished trials there.

Trials run ``tune.parallel`` at a time, one worker process each on one thread (:mod:`kdlib.stages.workers`). They are
asked together and told together, so the sampler and the pruner see the same history on any machine, and an
uninterrupted study is reproduced trial for trial (a diverged trial counts as pruned, and is marked so).

The storage is a journal file next to the results
(``results/tune/<dataset>/<variant>/study.journal``) unless ``--storage`` names a database (SQLAlchemy URL,
e.g. ``postgresql://user:password@host/db``) that several machines share: each runs its own batches until the
study has its trials, which then no longer reproduce exactly (who asks first depends on timing).

An interrupted study resumes from its storage: finished trials are kept, a trial that was running is failed
and asked again (with the seed it had, but a history that may differ). A study is resumed only if it was made
by the same settings and code (:func:`fingerprint`), and a study that has all its trials is not reused: running
the stage again (its code or inputs changed) starts it afresh. A shared database's study of other settings is
refused. The results, written only when the study is complete, are ``best.json`` (what
:mod:`kdlib.stages.pipeline` gives the distillation stage when ``tune.use`` is ``tuned``) and ``trials.csv``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kdlib.core import params as P
from kdlib.core.io import write_csv, write_json
from kdlib.core.layout import BEST_FILE, JOURNAL_FILE, TRIALS_FILE, study_dir, teacher_path
from kdlib.kd.search import StorageError, open_storage, pruner, sampler, suggest
from kdlib.kd.trial import TrialResult, train_trial

if TYPE_CHECKING:
    import optuna

def _heartbeat(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    """Tell a shared database that the trial is alive (its heartbeat; a journal file keeps none)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if is_heartbeat_enabled(storage):
        storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]


@cache
def _worker_storage(storage: str) -> optuna.storages.BaseStorage:
    """One connection to the storage per worker process, for all the trials it trains."""
    return open_storage(storage)


def _worker_trial(storage: str, study_name: str, trial_id: int, cfg: P.TuneParams, *args: Any,
                  **kwargs: Any) -> TrialResult:
    """:func:`train_trial` in a worker process, reporting every epoch to the study and pruning where it says."""
    import optuna

    backend = _worker_storage(storage)
    study = optuna.load_study(study_name=study_name, storage=backend, pruner=pruner(cfg))
    trial = optuna.trial.Trial(study, trial_id)

    def on_epoch(epoch: int, accuracy: float) -> None:
        _heartbeat(backend, trial_id)
        try:
            trial.report(accuracy, epoch)
        except optuna.exceptions.UpdateFinishedTrialError:  # failed meanwhile by another machine: stop here
            raise optuna.TrialPruned() from None
        if trial.should_prune():
            raise optuna.TrialPruned()

    return train_trial(*args, on_epoch=on_epoch, **kwargs)


# ------------------------------------------------------------------------------------------------ the study
def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _rank(study: optuna.Study, number: int) -> int:
    """How many finished or running trials have a number up to ``number``: a trial beyond the budget is dropped
    (the first ``tune.trials`` trials asked, by number, are kept whichever machine asked them)."""
    from optuna.trial import TrialState

    live = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    return sum(t.number <= number for t in live)


def _tell(study: optuna.Study, trial: optuna.trial.Trial, result: TrialResult) -> None:
    from optuna.trial import TrialState

    trial.set_user_attr("spikes_per_image", None if math.isnan(result.spikes_per_image) else result.spikes_per_image)
    trial.set_user_attr("epochs", result.epochs)
    trial.set_user_attr("seconds", round(result.seconds, 2))
    if result.diverged:
        trial.set_user_attr("diverged", result.diverged)
    if result.pruned or result.diverged:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, result.val_accuracy)


def fingerprint(params: P.Params, dataset: str, variant_name: str) -> str:
    """What decides a study's trials, hashed: the tuning settings (``use`` and ``parallel`` aside), the variant
    and its search space, its student, the data split and kdlib's code. A stored study with another fingerprint
    was made by other settings or code and is not resumed."""
    cfg = params.tune.model_dump(exclude={"use", "parallel", "space"})
    content = {"tune": cfg, "space": params.tune.space[variant_name],
               "variant": params.variants[variant_name].model_dump(),
               "student": P.student_for(params.student, params.variants, variant_name, dataset).model_dump(),
               "data": params.data.model_dump(), "dataset": dataset}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    for path in sorted(Path(__file__).parent.parent.rglob("*")):  # kdlib's Python and C sources (no bytecode)
        if path.suffix not in (".py", ".c"):
            continue
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _open_study(storage: optuna.storages.BaseStorage, name: str, cfg: P.TuneParams, mark: str,
                shared: bool) -> optuna.Study:
    """The study ``name`` in ``storage``, created with fingerprint ``mark`` if absent. Kept when its fingerprint
    matches and, in a journal of its own, it is unfinished (it resumes); else started afresh in its own journal,
    refused in a shared database."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=pruner(cfg))
    found = study.user_attrs.get("fingerprint")
    if found is None and not study.trials:
        study.set_user_attr("fingerprint", mark)
        return study
    if shared:
        if found != mark:
            raise StorageError(f"--storage: the study {name!r} there was made with other settings or code; give "
                               "another database, or delete the study (optuna.delete_study)")
        return study
    if found != mark or len(_finished(study)) >= cfg.trials:  # other settings or code, or complete: start afresh
        optuna.delete_study(study_name=name, storage=storage)
        return _open_study(storage, name, cfg, mark, shared)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        storage.set_trial_state_values(stale._trial_id, TrialState.FAIL)  # interrupted: asked again
    return study


@contextlib.contextmanager
def _beating(storage: optuna.storages.BaseStorage, trial_ids: list[int]) -> Iterator[None]:
    """Keep the trials' heartbeats fresh while their batch trains and waits to be told (a shared database
    fails a trial whose heartbeat is older than its grace period)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if not is_heartbeat_enabled(storage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(storage.get_heartbeat_interval() or 60):  # type: ignore[attr-defined]
            for trial_id in trial_ids:
                _heartbeat(storage, trial_id)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run(dataset: str, variant_name: str, params: P.Params, root: Path, *, storage: str | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Run (or resume) the study of ``variant_name`` on ``dataset`` until it has ``tune.trials`` finished trials,
    then write ``best.json`` and ``trials.csv``; return the best entry (None when trials are still running on
    other machines sharing ``storage``)."""
    import optuna

    from kdlib.kd.trial import write_teacher_targets
    from kdlib.stages.workers import start_workers

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if variant_name not in params.tune.space:
        raise P.ParamsError(f"variant = {variant_name!r}: no search space under tune.space "
                            f"(defined: {', '.join(params.tune.space)})")
    cfg, variant = params.tune, params.variants[variant_name]
    out_dir = study_dir(root, dataset, variant_name)
    shared = storage is not None
    storage = storage or str(out_dir / JOURNAL_FILE)
    study_name = f"{dataset}/{variant_name}"
    backend = open_storage(storage)
    study = _open_study(backend, study_name, cfg, fingerprint(params, dataset, variant_name), shared)
    for name in (BEST_FILE, TRIALS_FILE):
        (out_dir / name).unlink(missing_ok=True)  # nothing stale for distill to read while the study runs

    student = P.student_for(params.student, params.variants, variant_name, dataset)
    teacher = teacher_path(root, dataset)
    context = start_workers()
    with warnings.catch_warnings():  # ask and tell on a database with a heartbeat: optuna says it expects optimize
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed", UserWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # fail_stale_trials
        with tempfile.TemporaryDirectory(prefix="kdlib-targets-") as folder:
            targets = write_teacher_targets(dataset, params.data, student, variant, teacher,
                                            Path(folder) / "targets.pt")
            with ProcessPoolExecutor(cfg.parallel, mp_context=context) as pool:
                while _batch(study, backend, storage, shared, pool, params, dataset, variant_name, teacher,
                             targets, log):
                    pass
    if len(_finished(study)) < cfg.trials:
        log(f"{study_name}: trials are still running elsewhere; the worker that finishes the last one writes "
            f"{BEST_FILE}")
        return None
    return write_results(study, out_dir, dataset, variant_name, cfg)


def _batch(study: optuna.Study, backend: optuna.storages.BaseStorage, storage: str, shared: bool,
           pool: ProcessPoolExecutor, params: P.Params, dataset: str, variant_name: str, teacher: Path,
           targets: Path | None, log: Callable[[str], None]) -> bool:
    """Ask up to ``tune.parallel`` trials, train them in ``pool`` and tell them, all together; False once the
    study has (or, with other machines, is running) its budget."""
    import optuna
    from optuna.trial import TrialState

    cfg, variant = params.tune, params.variants[variant_name]
    if shared:  # a machine that died leaves trials running: failed once their heartbeat is stale
        optuna.storages.fail_stale_trials(study)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    room = cfg.trials - len(_finished(study)) - len(running)
    if room <= 0:
        return False
    batch = []
    for _ in range(min(cfg.parallel, room)):
        live = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL]
        study.sampler = sampler(cfg, len(live))  # failed (interrupted) trials do not move the seeds
        trial = study.ask()
        if _rank(study, trial.number) > cfg.trials:  # another machine asked first: over budget
            study.tell(trial, state=TrialState.FAIL)
            break
        _heartbeat(backend, trial._trial_id)
        values = suggest(trial, cfg.space[variant_name])
        spec = P.apply_tuned(variant, values)
        student = P.student_for(params.student, {variant_name: spec}, variant_name, dataset)
        student = student.model_copy(update={"epochs": cfg.epochs})
        future = pool.submit(_worker_trial, storage, study.study_name, trial._trial_id, cfg, dataset, params.data,
                             student, spec, cfg.seed, teacher_path=teacher, targets_path=targets)
        batch.append((trial, values, future))
    with _beating(backend, [trial._trial_id for trial, _, _ in batch]):
        results = [future.result() for _, _, future in batch]  # all, before any is told: the pruner's history
    for (trial, values, _), result in zip(batch, results, strict=True):  # stays the same within a batch
        try:
            _tell(study, trial, result)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError) as err:
            log(f"{study.study_name} trial {trial.number}: not told, another machine failed it ({err})")
            continue
        state = "pruned" if result.pruned else "diverged" if result.diverged else "done"
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        log(f"{study.study_name} trial {trial.number}: {state} after {result.epochs} epochs, val "
            f"{result.val_accuracy:.4f}, {result.spikes_per_image:.1f} spikes/image ({shown}) {result.seconds:.0f} s")
    return True


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """Every finished trial: number, state, its values, validation accuracy, spikes per image, epochs, seconds."""
    rows = []
    for t in _finished(study):
        state = "diverged" if t.user_attrs.get("diverged") else t.state.name.lower()
        rows.append({"number": t.number, "state": state, **t.params,
                     "val_accuracy": t.value if t.value is not None else max(t.intermediate_values.values(),
                                                                             default=math.nan),
                     "spikes_per_image": t.user_attrs.get("spikes_per_image"),
                     "epochs": t.user_attrs.get("epochs"), "seconds": t.user_attrs.get("seconds")})
    return pd.DataFrame(rows).sort_values("number").reset_index(drop=True)


def write_results(study: optuna.Study, out_dir: Path, dataset: str, variant_name: str,
                  cfg: P.TuneParams) -> dict[str, Any]:
    """Write ``trials.csv`` and ``best.json`` (atomically, the best last) and return the best entry."""
    table = trials_table(study)
    write_csv(out_dir / TRIALS_FILE, table)
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise RuntimeError(f"{study.study_name}: every trial was pruned or diverged ({out_dir / TRIALS_FILE}); "
                           "widen or lower tune.space's ranges (a smaller lr diverges less)")
    best = study.best_trial
    entry = {"dataset": dataset, "variant": variant_name, "values": best.params, "val_accuracy": best.value,
             "spikes_per_image": best.user_attrs.get("spikes_per_image"), "trial": best.number,
             "trials": len(table), "pruned": int((table["state"] == "pruned").sum()),
             "diverged": int((table["state"] == "diverged").sum()), "epochs": cfg.epochs,
             "seed": cfg.seed, "space": cfg.space[variant_name]}
    write_json(out_dir / BEST_FILE, entry)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.stages.tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a dataset listed in data.datasets")
    parser.add_argument("variant", help="a variant listed in distill.variants")
    parser.add_argument("--storage", help="a database URL shared with other machines (default: a journal file "
                                          "under results/tune/<dataset>/<variant>/)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workbook folder (default: here)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        params = P.load(root / "params.yaml")
        P.check_dataset(params, args.dataset)
        if args.variant not in params.distill.variants:
            raise P.ParamsError(f"variant = {args.variant!r}: not in distill.variants "
                                f"({', '.join(params.distill.variants)})")
        run(args.dataset, args.variant, params, root, storage=args.storage)
    except (P.ParamsError, StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
