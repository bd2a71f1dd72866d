"""The workbook's parameters: one schema, validated once, for ``params.yaml`` and for notebooks.

``params.yaml`` holds every experiment parameter, one section per concern. The pipeline validates
the whole file before any stage starts; a notebook validates the sections papermill injected into
it with the same models, so a wrong value gets the same message wherever it comes from::

    params.yaml: teacher.epochs = 0: Input should be greater than or equal to 1

Types are strict (no silent string-to-number conversion) and unknown keys are errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kdlib.data import DATASETS

PARAMS_FILE = Path(__file__).resolve().parent.parent / "params.yaml"


class ParamsError(ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataParams(_Section):
    """Which datasets the study runs on, and how the validation set is carved."""

    datasets: list[Literal["mnist", "fashion-mnist", "mnist-5k"]] = Field(min_length=1)
    val_size: int | None = Field(default=None, ge=1)
    split_seed: int = Field(default=0, ge=0)


class TeacherParams(_Section):
    """The ANN teacher and how it is trained."""

    arch: Literal["mlp", "cnn"] = "mlp"
    hidden: list[int] = Field(default=[1200, 1200], min_length=1)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_shift: int = Field(default=0, ge=0, le=4)
    seed: int = Field(default=0, ge=0)


class Params(_Section):
    """The whole of ``params.yaml``."""

    data: DataParams
    teacher: TeacherParams


def _format(err: ValidationError, prefix: str, source: str) -> ParamsError:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in (*([prefix] if prefix else []), *e["loc"]))
        value = "(missing)" if e["type"] == "missing" else repr(e["input"])
        lines.append(f"{source}: {key} = {value}: {e['msg']}")
    return ParamsError("\n".join(lines))


def validate(model: type[_Section], values: Any, *, prefix: str = "", source: str = "params.yaml") -> Any:
    """Validate ``values`` against ``model``; raise :class:`ParamsError` naming every bad key."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise _format(err, prefix, source) from None


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run from the workbook folder.") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from None
    return validate(Params, raw, source=path.name)


def notebook_section(model: type[_Section], values: Any, name: str) -> Any:
    """Validate a section injected into a notebook as a dict (the notebook's ``parameters`` cell)."""
    return validate(model, values, prefix=name, source="notebook parameters")


def dataset_name(value: Any) -> str:
    """Validate a single dataset name given to a notebook or a stage."""
    if value not in DATASETS:
        raise ParamsError(f"dataset = {value!r}: unknown dataset; choose one of {', '.join(DATASETS)}")
    return value
