"""Tests for :mod:`kdlib.stages.tune`: the tuning stage on the real 5,000 digits with the quick parameters.

A study is reproduced trial for trial, resumes after it is killed without repeating a finished trial, is shared
by two processes on one storage, and never reads the test split; bad search spaces, budgets, storages and
tuned-values files stop with one line that names what is wrong.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY, venv_env

from kdlib.core import params as P
from kdlib.core.data import load_dataset
from kdlib.core.layout import BEST_FILE, JOURNAL_FILE, TRIALS_FILE, load_tuned, study_dir, teacher_path
from kdlib.kd import search, trial
from kdlib.snn.teachers import build_teacher, save_teacher, train_teacher
from kdlib.stages import tune
from kdlib.stages.pipeline import stage_parameters

DATASET = "mnist-5k"


def _write_params(root: Path, **tune_overrides: object) -> P.Params:
    values = copy.deepcopy(TINY)
    values["tune"] |= tune_overrides
    (root / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return P.load(root / "params.yaml")


@pytest.fixture(scope="module")
def teacher_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workbook folder with the quick teacher of stage 1 (trained here, not by the notebook)."""
    root = tmp_path_factory.mktemp("tune")
    params = _write_params(root)
    data = load_dataset(DATASET, val_size=params.data.val_size, split_seed=params.data.split_seed)
    teacher = build_teacher(params.teacher)
    train_teacher(teacher, data, params.teacher, torch.device("cpu"))
    save_teacher(root / "results" / "teacher" / DATASET / "teacher.pt", teacher, params.teacher, DATASET, 10,
                 {"test_accuracy": math.nan})
    return root


def _tune(root: Path, variant: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "kdlib.stages.tune", DATASET, variant, "--root", str(root), *args],
                          env=venv_env(), text=True, capture_output=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _trials(root: Path, variant: str) -> pd.DataFrame:
    return pd.read_csv(study_dir(root, DATASET, variant) / TRIALS_FILE).drop(columns="seconds")


@pytest.mark.slow  # trains a study's trials in worker processes
def test_a_study_has_its_budget_and_is_reproduced_trial_for_trial(teacher_root: Path) -> None:
    params = _write_params(teacher_root)
    first = tune.run(DATASET, "kd", params, teacher_root, log=lambda _: None)
    table = _trials(teacher_root, "kd")
    assert first is not None and len(table) == params.tune.trials == first["trials"]
    assert set(table.columns) >= {"lr", "alpha", "tau", "val_accuracy", "spikes_per_image", "state"}
    assert first["val_accuracy"] == table["val_accuracy"].max()
    for key, (low, high, *_) in params.tune.space["kd"].items():
        assert table[key].between(low, high).all()
    tuned = load_tuned(study_dir(teacher_root, DATASET, "kd") / BEST_FILE, DATASET, "kd", params.variants["kd"],
                       params.tune.space["kd"])
    assert tuned.tau_teacher == tuned.tau_student == first["values"]["tau"]
    assert tuned.student["lr"] == first["values"]["lr"]
    again = tune.run(DATASET, "kd", params, teacher_root, log=lambda _: None)  # complete: started afresh
    assert again == first
    pd.testing.assert_frame_equal(_trials(teacher_root, "kd"), table)


@pytest.mark.slow  # trains a study's trials in worker processes
def test_the_distillation_stage_trains_the_tuned_values_or_the_hand_set_ones(teacher_root: Path) -> None:
    params = _write_params(teacher_root)
    tune.run(DATASET, "scratch", params, teacher_root, log=lambda _: None)
    best = json.loads((study_dir(teacher_root, DATASET, "scratch") / BEST_FILE).read_text())
    _, given = stage_parameters("distill", DATASET, params, params_file=teacher_root / "params.yaml",
                                root=teacher_root, variant="scratch")
    assert given["tuning"] == "tuned" and given["variant"]["student"] == {"lr": best["values"]["lr"]}
    hand = _write_params(teacher_root, use="hand-set")
    _, given = stage_parameters("distill", DATASET, hand, params_file=teacher_root / "params.yaml",
                                root=teacher_root, variant="scratch")
    assert given["tuning"] == "hand-set" and given["variant"] == hand.variants["scratch"].model_dump()


@pytest.mark.slow  # trains a study's trials in worker processes
def test_a_killed_study_resumes_without_repeating_finished_trials(teacher_root: Path) -> None:
    import optuna

    _write_params(teacher_root, trials=6, epochs=3, prune_after=2)
    journal = study_dir(teacher_root, DATASET, "scratch") / JOURNAL_FILE
    journal.unlink(missing_ok=True)
    command = [sys.executable, "-m", "kdlib.stages.tune", DATASET, "scratch", "--root", str(teacher_root)]
    proc = subprocess.Popen(command,
                            env=venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    storage = search.open_storage(journal)
    finished: list[optuna.trial.FrozenTrial] = []
    deadline = time.monotonic() + 300
    while len(finished) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if journal.is_file() and storage.get_all_studies():
            finished = tune._finished(optuna.load_study(study_name=f"{DATASET}/scratch", storage=storage))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len(finished) < 6, "the study should be killed part way"
    assert not (study_dir(teacher_root, DATASET, "scratch") / BEST_FILE).exists()  # nothing for distill to read
    before = {t.number: t.params for t in finished}

    _tune(teacher_root, "scratch")
    study = optuna.load_study(study_name=f"{DATASET}/scratch", storage=search.open_storage(journal))
    after = {t.number: t.params for t in tune._finished(study)}
    assert len(after) == 6 and all(after[n] == p for n, p in before.items())  # kept, not trained again
    params = [tuple(p.values()) for p in after.values()]
    assert len(set(params)) == len(params)


@pytest.mark.slow  # trains a study's trials in worker processes
def test_two_processes_share_one_study(teacher_root: Path, tmp_path: Path) -> None:
    import optuna

    _write_params(teacher_root, trials=5)
    storage = tmp_path / "shared.journal"
    args = [sys.executable, "-m", "kdlib.stages.tune", DATASET, "scratch", "--root", str(teacher_root), "--storage",
            str(storage)]
    procs = [subprocess.Popen(args, env=venv_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    study = optuna.load_study(study_name=f"{DATASET}/scratch", storage=search.open_storage(storage))
    finished = tune._finished(study)
    assert sorted(t.number for t in finished) == sorted({t.number for t in finished}) and len(finished) == 5
    assert all("trial" in out for out, _ in outs), "both processes trained trials"
    assert (study_dir(teacher_root, DATASET, "scratch") / BEST_FILE).is_file()


def test_the_study_never_reads_the_test_split(teacher_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Untouchable:
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"the tuning stage read the test split ({name})")

        def __len__(self) -> int:
            raise AssertionError("the tuning stage read the test split (len)")

    loaded = trial._dataset
    monkeypatch.setattr(trial, "_dataset", lambda *args: dataclasses.replace(loaded(*args), test=Untouchable()))
    params = _write_params(teacher_root)
    cfg = P.student_for(params.student, params.variants, "kd", DATASET)
    result = trial.train_trial(DATASET, params.data, cfg, params.variants["kd"], 0,
                               teacher_path=teacher_path(teacher_root, DATASET), targets_path=None)
    assert 0 < result.val_accuracy <= 1 and result.spikes_per_image > 0


@pytest.mark.parametrize(("change", "message"), [
    ({"trials": 0}, "tune.trials = 0: Input should be greater than or equal to 1"),
    ({"space": {"scratch": {"lr": [1.0e-2, 1.0e-3, "log"]}}},
     "tune.space.scratch.lr = [0.01, 0.001, 'log']: the range is empty or reversed"),
    ({"space": {"scratch": {"lr": [1.0e-3, 1.0e-3]}}},
     "tune.space.scratch.lr = [0.001, 0.001]: the range is empty or reversed"),
    ({"space": {"scratch": {"lr": [0.0, 1.0e-3, "log"]}}}, "a log range needs low > 0"),
    ({"space": {"scratch": {"alpha": [0.1, 0.9]}}},
     "tune.space.scratch.alpha: 'alpha' is not a hyperparameter of variant 'scratch' (allowed: lr)"),
    ({"space": {"kd": {"alpha": [0.5, 1.5]}}}, "tune.space.kd.alpha = [0.5, 1.5]: 1.5 is not allowed for alpha"),
    ({"space": {"kd": {"tau_ratio": [0.5, 0.9]}}},
     "tune.space.kd.tau_ratio: 'tau_ratio' is not a hyperparameter of variant 'kd' (allowed: lr, alpha, tau)"),
    ({"space": {"kd": None}}, "tune.space.kd: missing; every variant of distill.variants"),
    ({"space": {"scratch": {"lr": ["1e-3", 1.0e-2]}}}, "YAML reads a number such as 1e-3 as text: write 1.0e-3"),
])
def test_a_bad_tuning_parameter_names_the_key_and_what_is_allowed(tmp_path: Path, change: dict, message: str) -> None:
    values = copy.deepcopy(TINY)
    for key, value in change.items():
        if key != "space":
            values["tune"][key] = value
    for name, space in change.get("space", {}).items():
        if space is None:
            del values["tune"]["space"][name]
        else:
            values["tune"]["space"][name] = space
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    with pytest.raises(P.ParamsError) as err:
        P.load(tmp_path / "params.yaml")
    assert message in str(err.value)


def test_heterogeneous_kd_is_searched_through_the_ratio_of_its_temperatures() -> None:
    hetero = P.KDVariant(loss="kd", alpha=0.9, tau_teacher=4.0, tau_student=1.0)
    assert set(P.searchable(hetero)) == {"lr", "alpha", "tau_teacher", "tau_ratio"}
    tuned = P.apply_tuned(hetero, {"tau_teacher": 6.0, "tau_ratio": 0.25, "lr": 3e-3})
    assert (tuned.tau_teacher, tuned.tau_student, tuned.student) == (6.0, 1.5, {"lr": 3e-3})


@pytest.mark.parametrize(("front", "message"), [
    ({"taus": [2.0, 2.0]}, "front.taus = [2.0, 2.0]: give at least two different temperatures"),
    ({"match": -0.1}, "front.match = -0.1: Input should be greater than or equal to 0"),
])
def test_a_bad_front_names_the_key(tmp_path: Path, front: dict, message: str) -> None:
    values = copy.deepcopy(TINY)
    values["front"] |= front
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(P.ParamsError, match=re.escape(message)):
        P.load(tmp_path / "params.yaml")


def test_a_storage_that_cannot_be_opened_says_so(teacher_root: Path) -> None:
    for url in ("postgresql://nobody@127.0.0.1:9/none", "sqlite:////no/such/folder/study.db"):
        with pytest.raises(search.StorageError, match=r"--storage .*: cannot open it"):
            search.open_storage(url)
    proc = _tune(teacher_root, "kd", "--storage", "sqlite:////no/such/folder/study.db", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --storage sqlite:////no/such/folder/study.db")


def test_a_tuned_values_file_of_another_variant_or_corrupted_is_refused(teacher_root: Path, tmp_path: Path) -> None:
    params = _write_params(teacher_root)
    best = tmp_path / BEST_FILE
    scratch, space = params.variants["scratch"], params.tune.space["scratch"]
    with pytest.raises(P.ParamsError, match=r"missing; the variant 'scratch' has not been tuned on mnist-5k: run "
                                            r"`dvc repro tune@mnist-5k-scratch`, or set tune.use: hand-set"):
        load_tuned(best, DATASET, "scratch", scratch, space)
    best.write_text(json.dumps({"dataset": DATASET, "variant": "kd", "values": {"lr": 1e-3}, "space": space}))
    with pytest.raises(P.ParamsError, match="holds the study of 'kd' on mnist-5k"):
        load_tuned(best, DATASET, "scratch", scratch, space)
    best.write_text(json.dumps({"dataset": DATASET, "variant": "scratch", "values": {"alpha": 0.5}, "space": space}))
    with pytest.raises(P.ParamsError, match=r"do not fit variant 'scratch' \('alpha \(allowed: lr\)'\)"):
        load_tuned(best, DATASET, "scratch", scratch, space)
    best.write_text("{not json")
    with pytest.raises(P.ParamsError, match="unreadable"):
        load_tuned(best, DATASET, "scratch", scratch, space)


def test_the_matched_comparison_of_the_front() -> None:
    from kdlib.stages.front import matched, pairs

    assert pairs(P.quick().front) == [(0.5, 0.5), (1.0, 0.5), (1.0, 1.0)]
    front = pd.DataFrame({
        "kind": ["kd", "kd", "kd", "hetero_kd", "hetero_kd", "hetero_kd", "rate_reg", "rate_reg"],
        "tau_teacher": [1.0, 2.0, 4.0, 4.0, 4.0, 8.0, None, None],
        "tau_student": [1.0, 2.0, 4.0, 1.0, 0.5, 0.5, None, None],
        "rate_lambda": [None] * 6 + [0.1, 1.0],
        "val_accuracy": [0.9812, 0.980, 0.983, 0.9815, 0.975, 0.9812, 0.9829, 0.970],
        "spikes_per_image": [260.0, 300.0, 400.0, 250.0, 100.0, 220.0, 330.0, 90.0],
    })
    result = matched(front, 0.002)
    assert result["reference"]["tau_teacher"] == 4.0 and result["reference"]["spikes_per_image"] == 400.0
    # within 0.2 points of 98.3 %: heterogeneous (4, 1) and (8, 0.5), plain (1, 1), the penalty at 0.1
    assert result["hetero"]["tau_teacher"] == 8.0 and result["saving"] == pytest.approx(0.45)
    assert result["plain"]["tau_teacher"] == 1.0 and result["over_plain"] == pytest.approx(1 - 220 / 260)
    assert result["rate"]["rate_lambda"] == 0.1 and result["over_rate"] == pytest.approx(1 - 220 / 330)
    assert not result["reaches_half"] and result["paper"] == "inconclusive"  # (4, 0.5) saves 75 %, far below
    assert result["largest_saving"]["saving"] == pytest.approx(0.75)
    assert matched(front, 0.01)["paper"] == "reproduced"
    assert matched(front.assign(spikes_per_image=front.spikes_per_image.clip(lower=200)), 0.002)["paper"] == "refuted"


@pytest.mark.slow  # trains a study's trials in worker processes
def test_the_report_reads_the_studies_back(teacher_root: Path) -> None:
    from kdlib.report import studies

    params = _write_params(teacher_root)
    tune.run(DATASET, "kd", params, teacher_root, log=lambda _: None)
    tried, best = studies.trials(teacher_root), studies.best(teacher_root)
    kd = tried[tried.variant == "kd"]
    assert len(kd) == params.tune.trials and set(kd.dataset) == {DATASET}
    row = best[best.variant == "kd"].iloc[0]
    assert row.val_accuracy == kd.val_accuracy.max() and set(row["values"]) == {"lr", "alpha", "tau"}
    history = studies.history(tried)
    curve = history[history.variant == "kd"]
    assert curve.best_so_far.is_monotonic_increasing and curve.best_so_far.iloc[-1] == row.val_accuracy
    weights = studies.importances(teacher_root, DATASET, "kd")
    assert set(weights.index) == {"lr", "alpha", "tau"} and weights.sum() == pytest.approx(1.0)
    hand = studies.hand_set(params.variants["kd"], params.student.lr, ["lr", "alpha", "tau"])
    assert hand == {"lr": params.student.lr, "alpha": 0.5, "tau": 2.0}
    assert studies.values_text({"lr": 0.0031, "alpha": 0.62}) == "lr 0.0031, alpha 0.62"
