"""The tuning studies and the temperature fronts read back for the report: what each study tried, where it
ended, which hyperparameters mattered, and KD's spike–accuracy front.

The stages write them (:mod:`kdlib.stages.tune`: ``results/tune/<dataset>/<variant>/``; :mod:`kdlib.stages.front`:
``results/front/<dataset>/``); these functions only read. Every table has ``dataset`` and, for the studies,
``variant`` columns.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pandas as pd

from kdlib.core.layout import BEST_FILE, FRONT_FILE, JOURNAL_FILE, METRICS_FILE, TRIALS_FILE, results_dir, study_dir


def trials(root: Path) -> pd.DataFrame:
    """Every finished trial of every study (``trials.csv``), with ``dataset`` and ``variant``."""
    frames = [pd.read_csv(path).assign(dataset=path.parent.parent.name, variant=path.parent.name)
              for path in sorted(results_dir("tune", [], root).glob(f"*/*/{TRIALS_FILE}"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def best(root: Path) -> pd.DataFrame:
    """Every study's ``best.json``: one row per (dataset, variant) with its best trial and values."""
    rows = [json.loads(path.read_text()) for path in sorted(results_dir("tune", [], root).glob(f"*/*/{BEST_FILE}"))]
    return pd.DataFrame(rows)


def history(table: pd.DataFrame) -> pd.DataFrame:
    """The optimisation history of :func:`trials`' table: for each study and trial (by number), the best
    validation accuracy of the complete trials so far (``best_so_far``)."""
    rows = []
    for _, part in table.groupby(["dataset", "variant"], sort=False):
        part = part.sort_values("number")
        done = part.val_accuracy.where(part.state == "complete")
        rows.append(part.assign(best_so_far=done.cummax().ffill())[["dataset", "variant", "number", "state",
                                                                     "val_accuracy", "best_so_far"]])
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def importances(root: Path, dataset: str, variant: str, seed: int = 0) -> pd.Series:
    """How much of a study's variation in validation accuracy each hyperparameter explains (Optuna's fANOVA
    evaluator, seeded), over its complete trials; empty for a study of one hyperparameter or too few trials, and
    where the study's journal is not here."""
    with warnings.catch_warnings():  # optuna imports tqdm.auto, which warns in a notebook without ipywidgets
        warnings.filterwarnings("ignore", message="IProgress not found")
        import optuna

        from kdlib.kd.search import open_storage

    journal = study_dir(root, dataset, variant) / JOURNAL_FILE
    if not journal.is_file():  # a clone without the DVC cache (`dvc pull` brings the journals)
        return pd.Series(dtype=float)
    try:
        study = optuna.load_study(study_name=f"{dataset}/{variant}", storage=open_storage(journal))
    except KeyError:  # a journal without this study
        return pd.Series(dtype=float)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2 or len({k for t in complete for k in t.params}) < 2:
        return pd.Series(dtype=float)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return pd.Series(optuna.importance.get_param_importances(study, evaluator=evaluator), dtype=float)


def fronts(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every dataset's front (``front.csv``, one row per pair of temperatures) and its matched comparison
    (``metrics.json``, one row per dataset, nested entries flattened with dots)."""
    base = results_dir("front", [], root)
    points = [pd.read_csv(p).assign(dataset=p.parent.name) for p in sorted(base.glob(f"*/{FRONT_FILE}"))]
    matched = [json.loads(p.read_text()) for p in sorted(base.glob(f"*/{METRICS_FILE}"))]
    return (pd.concat(points, ignore_index=True) if points else pd.DataFrame(),
            pd.json_normalize(matched) if matched else pd.DataFrame())


def values_text(values: dict[str, float]) -> str:
    """A study's values in one short line: ``lr 3.1e-03, alpha 0.62, tau 3.4``."""
    return ", ".join(f"{k} {v:.2g}" if (abs(v) < 0.01 and v != 0) or abs(v) >= 1000 else f"{k} {v:.3g}"
                     for k, v in values.items() if isinstance(v, int | float) and not math.isnan(v))


def hand_set(variant: object, student_lr: float, keys: list[str]) -> dict[str, float]:
    """The hand-set values (an entry under ``variants``; ``student_lr``, the learning rate it trains with) of the
    keys a study searched (``tune.space.<variant>``), for the table that sets them beside the tuned ones."""
    out = {}
    for key in keys:
        if key == "lr":
            out[key] = student_lr
        elif key == "tau":
            out[key] = variant.tau_teacher  # type: ignore[attr-defined]
        elif key == "tau_ratio":
            out[key] = variant.tau_student / variant.tau_teacher  # type: ignore[attr-defined]
        else:
            out[key] = getattr(variant, key)
    return out
