"""kdlib.params: every bad value is named with its key, its value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdlib import params as P

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, edit: dict) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in edit.items():
        section, _, name = key.partition(".")
        if name:
            raw[section][name] = value
        else:
            raw[section] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_dataset_names_match_the_loader() -> None:
    from kdlib import data

    assert P.DATASETS == data.DATASETS


def test_committed_params_are_valid() -> None:
    params = P.load(ROOT / "params.yaml")
    assert params.teacher.epochs >= 1 and params.data.datasets


@pytest.mark.parametrize(("edit", "message"), [
    ({"teacher.epochs": 0}, "params.yaml: teacher.epochs = 0: Input should be greater than or equal to 1"),
    ({"teacher.lr": "1e-3"}, "params.yaml: teacher.lr = '1e-3': Input should be a valid number"),
    ({"teacher.dropout": 1.5}, "params.yaml: teacher.dropout = 1.5: Input should be less than 1"),
    ({"teacher.arch": "resnet"}, "params.yaml: teacher.arch = 'resnet': Input should be 'mlp' or 'cnn'"),
    ({"teacher.epoch": 3}, "params.yaml: teacher.epoch = 3: Extra inputs are not permitted"),
    ({"data.datasets": ["mnist", "cifar"]},
     "params.yaml: data.datasets.1 = 'cifar': Input should be 'mnist', 'fashion-mnist' or 'mnist-5k'"),
    ({"data.val_size": -5}, "params.yaml: data.val_size = -5: Input should be greater than or equal to 1"),
])
def test_bad_values_are_named(tmp_path: Path, edit: dict, message: str) -> None:
    with pytest.raises(P.ParamsError) as err:
        P.load(_write(tmp_path, edit))
    assert str(err.value) == message


def test_every_error_is_reported(tmp_path: Path) -> None:
    with pytest.raises(P.ParamsError) as err:
        P.load(_write(tmp_path, {"teacher.epochs": -1, "teacher.batch_size": 0}))
    assert str(err.value).splitlines() == [
        "params.yaml: teacher.epochs = -1: Input should be greater than or equal to 1",
        "params.yaml: teacher.batch_size = 0: Input should be greater than or equal to 1",
    ]


def test_missing_section_and_unknown_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": {"datasets": ["mnist"]}, "teachr": {}}))
    with pytest.raises(P.ParamsError) as err:
        P.load(path)
    assert str(err.value).splitlines() == [
        "params.yaml: data.val_size = (missing): Field required",
        "params.yaml: data.split_seed = (missing): Field required",
        *(f"params.yaml: {name} = (missing): Field required"
          for name in ("teacher", "student", "variants", "distill", "spikes", "loihi")),
        "params.yaml: teachr = {}: Extra inputs are not permitted",
    ]


def test_per_dataset_overrides(tmp_path: Path) -> None:
    params = P.load(_write(tmp_path, {"teacher.per_dataset": {"mnist": {"epochs": 3}}}))
    assert params.teacher.for_dataset("mnist").epochs == 3
    assert params.teacher.for_dataset("fashion-mnist").epochs == params.teacher.epochs
    with pytest.raises(P.ParamsError) as err:
        P.load(_write(tmp_path, {"teacher.per_dataset": {"mnist": {"epochs": "3"}}}))
    assert str(err.value) == "params.yaml: teacher.per_dataset.mnist.epochs = '3': Input should be a valid integer"
    with pytest.raises(P.ParamsError, match=r"teacher.per_dataset.cifar.\[key\] = 'cifar': Input should be 'mnist', "):
        P.load(_write(tmp_path, {"teacher.per_dataset": {"cifar": {}}}))
    teacher = P.quick().teacher.model_dump() | {"per_dataset": {"mnist-5k": {"seed": 4}}}
    cfg = P.notebook_section(P.TeacherParams, teacher, "teacher", "mnist-5k")
    assert cfg.seed == 4


@pytest.mark.parametrize(("edit", "message"), [
    ({"student.steps": 0}, "params.yaml: student.steps = 0: Input should be greater than or equal to 1"),
    ({"student.neuron": "adex"},
     "params.yaml: student.neuron = 'adex': Input should be 'lif', 'ste-continuous' or 'ste-discontinuous'"),
    ({"variants.kd": {"loss": "kd", "alpha": 1.5, "tau_teacher": 4.0, "tau_student": 4.0}},
     "params.yaml: variants.kd.alpha = 1.5: Input should be less than or equal to 1"),
    ({"variants.kd": {"loss": "kd", "alpha": 0.5, "tau_teacher": -4.0, "tau_student": 4.0}},
     "params.yaml: variants.kd.tau_teacher = -4.0: Input should be greater than 0"),
    ({"variants.kd": {"loss": "kld"}}, "params.yaml: variants.kd = {'loss': 'kld'}: Input tag 'kld' found using "
     "'loss' does not match any of the expected tags: 'ce', 'kd', 'decoder_kd', 'attention_kd', 'joint_kd', "
     "'bidirectional_kd'"),
    ({"variants.scratch": {"loss": "ce", "student": {"steps": -1}}},
     "params.yaml: variants.scratch.student.steps = -1: Input should be greater than or equal to 1"),
    ({"distill.variants": ["kd", "fitnet"]},
     "params.yaml: distill.variants.1 = 'fitnet': not defined under variants (defined: scratch, ste_discontinuous, "
     "ste_continuous, kd, hetero_kd, decoder_kd, bidirectional_kd, attention_kd, joint_kd)"),
    ({"distill.seeds": [0, 1, 0]}, "params.yaml: distill.seeds.2 = 0: listed twice; give each seed once"),
    ({"distill.seeds": [-1]}, "params.yaml: distill.seeds.0 = -1: Input should be greater than or equal to 0"),
])
def test_bad_student_and_variant_values(tmp_path: Path, edit: dict, message: str) -> None:
    with pytest.raises(P.ParamsError) as err:
        P.load(_write(tmp_path, edit))
    assert str(err.value) == message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(P.ParamsError, match="params.yaml not found"):
        P.load(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("teacher: [unclosed")
    with pytest.raises(P.ParamsError, match="is not valid YAML"):
        P.load(tmp_path / "params.yaml")


def test_notebook_parameters_use_the_same_rules() -> None:
    with pytest.raises(P.ParamsError) as err:
        P.notebook_section(P.TeacherParams, P.quick().teacher.model_dump() | {"epochs": 2.5}, "teacher")
    assert str(err.value) == "notebook parameters: teacher.epochs = 2.5: Input should be a valid integer"
    with pytest.raises(P.ParamsError, match=r"dataset = 'svhn': unknown dataset; choose one of mnist, "):
        P.dataset_name("svhn")


@pytest.mark.parametrize(("edit", "message"), [
    ({"loihi.datasets": ["mnist-5k"]},
     "params.yaml: loihi.datasets.0 = 'mnist-5k': not in data.datasets (mnist, fashion-mnist)"),
    ({"loihi.variant": "fitnet"},
     "params.yaml: loihi.variant = 'fitnet': not one of distill.variants (scratch, ste_discontinuous, "
     "ste_continuous, kd, hetero_kd, decoder_kd, bidirectional_kd, attention_kd, joint_kd); "
     "its student of the first seed is written as NIR"),
    ({"loihi.variant": "ste_continuous"},
     "params.yaml: loihi.variant = 'ste_continuous': its student has 'ste-continuous' neurons; "
     "NIR's LIF node needs a 'lif' student"),
    ({"loihi.steps": 0}, "params.yaml: loihi.steps = 0: Input should be greater than or equal to 1"),
    ({"loihi.encoding": "direct"}, "params.yaml: loihi.encoding = 'direct': Input should be 'rate'"),
])
def test_bad_loihi_values_are_named(tmp_path: Path, edit: dict, message: str) -> None:
    with pytest.raises(P.ParamsError) as err:
        P.load(_write(tmp_path, edit))
    assert str(err.value) == message


def _keys(tree: object, prefix: str = "") -> set[str]:
    if not isinstance(tree, dict):
        return {prefix}
    return {key for name, value in tree.items() for key in _keys(value, f"{prefix}.{name}" if prefix else name)}


def test_the_study_and_its_fast_twin_set_the_same_keys_and_the_schema_sets_none() -> None:
    """One home for every value: params.yaml (the study) and params.quick.yaml (notebooks run by hand, tests)
    write every key of the schema, and the schema holds no experiment values of its own."""
    study, quick = (yaml.safe_load(path.read_text()) for path in (P.PARAMS_FILE, P.QUICK_FILE))
    sections = ("data", "teacher", "student", "spikes", "loihi")
    for name in sections:
        study_keys = _keys(study[name]) - {k for k in _keys(study[name]) if k.startswith("per_dataset")}
        assert study_keys == _keys(quick[name]), f"{name}: params.yaml and params.quick.yaml set other keys"
    for model in (P.DataParams, P.TeacherParams, P.StudentParams, P.SpikesParams, P.LoihiParams):
        defaulted = {name for name, field in model.model_fields.items() if not field.is_required()}
        assert defaulted <= {"per_dataset", "encoding"}, f"{model.__name__} has defaults for {defaulted}"
    P.quick()  # and the fast twin is valid
