"""kdlib.core.params: every bad value is named with its key, its value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdlib.core import params as P

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, edit: dict) -> Path:
    """A params.yaml: the tiny test parameters (params.quick.yaml) with ``edit`` applied."""
    raw = yaml.safe_load(P.QUICK_FILE.read_text())
    for key, value in edit.items():
        section, _, name = key.partition(".")
        if name:
            raw[section][name] = value
        else:
            raw[section] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _fails(tmp_path: Path, edit: dict, prefix: str, allowed: list[str]) -> None:
    with pytest.raises(P.ParamsError) as err:
        P.load(_write(tmp_path, edit))
    message = str(err.value)
    assert len(message.splitlines()) == 1 and message.startswith(prefix), message
    assert all(name in message for name in allowed), message


def test_dataset_names_match_the_loader() -> None:
    from kdlib.core import data

    assert P.DATASETS == data.DATASETS


def test_committed_params_are_valid() -> None:
    params = P.load(ROOT / "params.yaml")
    assert params.teacher.epochs >= 1 and params.data.datasets


# Each bad value stops with one line that starts with the workbook's prefix (file: key = value:) and names
# what is allowed where the choice is a list; the rest of the wording is pydantic's and may change.
@pytest.mark.parametrize(("edit", "prefix", "allowed"), [
    ({"teacher.epochs": 0}, "params.yaml: teacher.epochs = 0:", []),
    ({"teacher.lr": "1e-3"}, "params.yaml: teacher.lr = '1e-3':", ["number"]),
    ({"teacher.dropout": 1.5}, "params.yaml: teacher.dropout = 1.5:", []),
    ({"teacher.arch": "resnet"}, "params.yaml: teacher.arch = 'resnet':", ["'mlp'", "'cnn'"]),
    ({"teacher.epoch": 3}, "params.yaml: teacher.epoch = 3:", []),
    ({"data.datasets": ["mnist", "cifar"]}, "params.yaml: data.datasets.1 = 'cifar':",
     ["'mnist'", "'fashion-mnist'", "'mnist-5k'"]),
    ({"data.val_size": -5}, "params.yaml: data.val_size = -5:", []),
])
def test_bad_values_are_named(tmp_path: Path, edit: dict, prefix: str, allowed: list[str]) -> None:
    _fails(tmp_path, edit, prefix, allowed)


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
          for name in ("teacher", "student", "variants", "distill", "tune", "front", "spikes", "loihi")),
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


@pytest.mark.parametrize(("edit", "prefix", "allowed"), [
    ({"student.steps": 0}, "params.yaml: student.steps = 0:", []),
    ({"student.neuron": "adex"}, "params.yaml: student.neuron = 'adex':",
     ["'lif'", "'ste-continuous'", "'ste-discontinuous'"]),
    ({"variants.kd": {"loss": "kd", "alpha": 1.5, "tau_teacher": 4.0, "tau_student": 4.0}},
     "params.yaml: variants.kd.alpha = 1.5:", []),
    ({"variants.kd": {"loss": "kd", "alpha": 0.5, "tau_teacher": -4.0, "tau_student": 4.0}},
     "params.yaml: variants.kd.tau_teacher = -4.0:", []),
    ({"variants.kd": {"loss": "kld"}}, "params.yaml: variants.kd = {'loss': 'kld'}:",
     list(map(repr, P.VARIANTS))),
    ({"variants.scratch": {"loss": "ce", "student": {"steps": -1}}},
     "params.yaml: variants.scratch.student.steps = -1:", []),
    ({"distill.variants": ["kd", "fitnet"]}, "params.yaml: distill.variants.1 = 'fitnet': not defined under variants",
     ["scratch", "kd"]),
    ({"distill.seeds": [0, 1, 0]}, "params.yaml: distill.seeds.2 = 0: listed twice", []),
    ({"distill.seeds": [-1]}, "params.yaml: distill.seeds.0 = -1:", []),
])
def test_bad_student_and_variant_values(tmp_path: Path, edit: dict, prefix: str, allowed: list[str]) -> None:
    _fails(tmp_path, edit, prefix, allowed)


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


@pytest.mark.parametrize(("edit", "prefix", "allowed"), [
    ({"loihi.datasets": ["mnist"]}, "params.yaml: loihi.datasets.0 = 'mnist': not in data.datasets", ["mnist-5k"]),
    ({"loihi.variant": "fitnet"}, "params.yaml: loihi.variant = 'fitnet': not one of distill.variants",
     ["scratch", "kd"]),
    ({"variants.kd": {"loss": "kd", "alpha": 0.5, "tau_teacher": 2.0, "tau_student": 2.0,
                      "student": {"neuron": "ste-continuous"}}},
     "params.yaml: loihi.variant = 'kd': its student has 'ste-continuous' neurons", ["'lif'"]),
    ({"loihi.steps": 0}, "params.yaml: loihi.steps = 0:", []),
    ({"loihi.encoding": "direct"}, "params.yaml: loihi.encoding = 'direct':", ["'rate'"]),
    ({"loihi.baseline": ["mnist"]}, "params.yaml: loihi.baseline.0 = 'mnist': not in loihi.datasets", ["mnist-5k"]),
    ({"loihi.input_bits": [4, 9]}, "params.yaml: loihi.input_bits.1 = 9:", ["8"]),
    ({"loihi.input_bits": []}, "params.yaml: loihi.input_bits = []:", ["at least 1"]),
    ({"loihi.lava_images": 0}, "params.yaml: loihi.lava_images = 0:", ["1"]),
])
def test_bad_loihi_values_are_named(tmp_path: Path, edit: dict, prefix: str, allowed: list[str]) -> None:
    _fails(tmp_path, edit, prefix, allowed)


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
