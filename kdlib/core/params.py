"""The workbook's parameters: one schema, validated once, for ``params.yaml`` and for notebooks.

``params.yaml`` holds every experiment parameter, one section per concern. The pipeline validates
the whole file before any stage starts; a notebook validates the sections papermill injected into
it with the same models, so a wrong value gets the same message wherever it comes from::

    params.yaml: teacher.epochs = 0: Input should be greater than or equal to 1

Types are strict (no silent string-to-number conversion), every number must be finite, and unknown
keys are errors. Sizes that depend on the data are checked against the datasets' known sizes before
any stage starts: the validation split must leave training images, and no batch may be larger than
the training split. Epoch counts are bounded by :data:`MAX_EPOCHS`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

if TYPE_CHECKING:
    import pandas as pd

WORKBOOK = Path(__file__).resolve().parents[2]  # the repository this kdlib belongs to
PARAMS_FILE = WORKBOOK / "params.yaml"
# The study's fast twin: every key of params.yaml at values that run in seconds on the offline 5,000 digits.
# The notebooks' parameter cells and the tests read it; nothing else holds experiment values.
QUICK_FILE = PARAMS_FILE.with_name("params.quick.yaml")
Dataset = Literal["mnist", "fashion-mnist", "mnist-5k"]  # the names kdlib.core.data knows (a test keeps them in step)
DATASETS: tuple[str, ...] = get_args(Dataset)
# Training images of each dataset before the validation split, and the default validation size
# (kdlib.core.data reads these; a test checks them against the loaded data).
PIXELS = 28 * 28  # every dataset's images are 28 × 28 and grey: the input width of every dense network
TRAIN_IMAGES = {"mnist": 60_000, "fashion-mnist": 60_000, "mnist-5k": 4_000}
DEFAULT_VAL_SIZE = {"mnist": 5_000, "fashion-mnist": 5_000, "mnist-5k": 500}
# The most epochs any training may ask for. The fastest epoch of the study (the MNIST teacher's, about
# 7 s on the 2-core machine) makes 1,000 epochs two hours for a single run, beyond what a study here
# can finish; no training curve of the study still improves after a few dozen.
MAX_EPOCHS = 1000


class ParamsError(ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class DataParams(_Section):
    """Which datasets the study runs on, and how the validation set is carved."""

    datasets: list[Dataset] = Field(min_length=1)
    val_size: int | None = Field(ge=1)
    split_seed: int = Field(ge=0)


class _PerDataset(_Section):
    """A section whose values can differ by dataset: ``per_dataset: {fashion-mnist: {epochs: 15}}``."""

    per_dataset: dict[Dataset, dict[str, Any]] = {}

    def for_dataset(self, dataset: str) -> Any:
        """This section with ``dataset``'s overrides applied (and validated)."""
        merged = self.model_dump(exclude={"per_dataset"}) | self.per_dataset.get(dataset, {})
        return type(self).model_validate(merged)


class TeacherParams(_PerDataset):
    """The ANN teacher and how it is trained."""

    arch: Literal["mlp", "cnn"]
    hidden: list[int] = Field(min_length=1)
    dropout: float = Field(ge=0.0, lt=1.0)
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)
    max_shift: int = Field(ge=0, le=4)
    seed: int = Field(ge=0)


class StudentParams(_PerDataset):
    """The spiking student shared by every variant (a variant may override any of these)."""

    arch: Literal["mlp", "cnn"]
    hidden: list[int] = Field(min_length=1)  # dense widths (cnn: after the convolutions)
    channels: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, max_length=3)  # cnn: convolutions
    neuron: Literal["lif", "ste-continuous", "ste-discontinuous"]
    encoding: Literal["direct", "rate"]
    steps: int = Field(ge=1, le=1024)
    tau_mem: float = Field(ge=1.0)
    v_th: float = Field(gt=0.0)
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)
    max_shift: int = Field(ge=0, le=4)


class VariantParams(_Section):
    """What every variant entry has: ``loss``, the tag of its objective (each schema narrows it to one or a few
    literal values), and its overrides of the student section. A method's own hyperparameters are fields of
    its subclass, registered with :func:`register_variant` (or, with its objective, :func:`kdlib.kd.losses.register`).
    """

    loss: str
    student: dict[str, Any] = {}  # overrides of the student section for this variant
    # the loss on the running mean of the outputs at every step, averaged over the steps, instead of on the
    # final logits only (a TET-like per-step objective: the student learns to answer early, for early exit)
    per_step: bool = False


# The variant schemas by loss tag: what ``variants.<name>.loss`` may be, and what else the entry holds.
VARIANTS: dict[str, type[VariantParams]] = {}


def register_variant(schema: type[VariantParams]) -> type[VariantParams]:
    """Make ``schema`` the schema of the variant entries whose ``loss`` is one of its literal tags."""
    tags = get_args(schema.model_fields["loss"].annotation)
    if not tags or not issubclass(schema, VariantParams):
        raise TypeError(f"{schema.__name__}: a variant schema subclasses VariantParams and declares "
                        "loss: Literal[...] with its tags")
    for tag in tags:
        if VARIANTS.get(tag, schema) is not schema:
            raise ValueError(f"loss {tag!r} already has the schema {VARIANTS[tag].__name__}")
        VARIANTS[tag] = schema
    return schema


@register_variant
class CEVariant(VariantParams):
    """Cross-entropy only: the student learns from the labels (scratch, ste)."""

    loss: Literal["ce"]


@register_variant
class KDVariant(VariantParams):
    """(1-α)·CE + α·τ_T·τ_S·KL(softmax(z_T/τ_T) ‖ softmax(z_S/τ_S)); τ_T ≠ τ_S is heterogeneous KD."""

    loss: Literal["kd"]
    alpha: float = Field(ge=0.0, le=1.0)
    tau_teacher: float = Field(gt=0.0)
    tau_student: float = Field(gt=0.0)


@register_variant
class RateRegVariant(VariantParams):
    """CE + λ · mean firing rate of the hidden layers: the plain way to fewer spikes (a control for hetero KD)."""

    loss: Literal["rate_reg"]
    rate_lambda: float = Field(ge=0.0)


@register_variant
class FeatureKDVariant(KDVariant):
    """KD plus β times a feature loss on the hidden layers listed in ``layers`` (student layer i ↔ teacher layer i)."""

    loss: Literal["decoder_kd", "attention_kd", "joint_kd"]
    beta: float = Field(ge=0.0)
    layers: list[int] = Field(min_length=1)


@register_variant
class BidirectionalVariant(FeatureKDVariant):
    """Decoder KD while the teacher is fine-tuned with CE + γ·KD(z_S → z_T) at learning rate ``teacher_lr``."""

    loss: Literal["bidirectional_kd"]
    gamma: float = Field(ge=0.0)
    teacher_lr: float = Field(gt=0.0)


def _variants_adapter() -> TypeAdapter:
    """Validates a ``variants`` mapping against the registered schemas, chosen by each entry's ``loss``."""
    schemas = tuple(dict.fromkeys(VARIANTS.values()))
    return TypeAdapter(dict[str, Annotated[Union[schemas], Field(discriminator="loss")]])  # noqa: UP007


class DistillParams(_Section):
    """Which variants the distillation stage runs, with which seeds."""

    variants: list[str] = Field(min_length=1)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)  # each student is trained once per seed


# Search keys that are not fields of a variant: ``lr`` (the student's learning rate), ``tau`` (τ_T = τ_S, for
# KD without heterogeneous temperatures) and ``tau_ratio`` (τ_S = tau_ratio · τ_T, for heterogeneous KD).
TUNE_KEYS = {"lr": "the student's learning rate", "tau": "tau_teacher = tau_student",
             "tau_ratio": "tau_student / tau_teacher"}
# Fields of a variant that are never searched: what it is, not how it is weighted.
FIXED_FIELDS = ("loss", "student", "per_step", "layers")


class TuneParams(_Section):
    """Stage ``tune``: one Optuna study per dataset and variant, on the validation split, the same budget for all.

    Every study runs ``trials`` trials of ``epochs`` epochs each (seeded TPE; a median pruner stops a trial
    whose validation accuracy falls below the median of the finished trials at the same epoch, from
    ``prune_after`` epochs on, once ``startup_trials`` trials have finished). ``parallel`` trials are asked and
    trained together (one process each): the sampler sees the same history whatever the machine's cores.
    """

    use: Literal["tuned", "hand-set"]  # what distill trains with: each study's best values, or variants.<name>
    trials: int = Field(ge=1, le=10_000)
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    seed: int = Field(ge=0)  # the sampler's seed; every trial trains its student from this seed too
    startup_trials: int = Field(ge=0)  # random trials before TPE models the history; the pruner waits as long
    prune_after: int = Field(ge=1)  # the first epoch after which a trial may be pruned
    parallel: int = Field(ge=1, le=64)
    # variant -> key -> [low, high] (linear) or [low, high, log]; keys: the variant's fields and TUNE_KEYS
    space: dict[str, dict[str, list[Any]]]


class FrontParams(_Section):
    """Stage ``front``: the spike–accuracy fronts of KD over both temperatures and of the firing-rate penalty.

    KD's student (``variants.kd``, with its tuned α and learning rate when ``tune.use`` is ``tuned``) is trained at
    every pair (τ_T, τ_S) of ``taus`` with τ_S ≤ τ_T: τ_S = τ_T is plain KD at every temperature, τ_S < τ_T
    heterogeneous KD (Lee et al.). The ``rate_reg`` student (its tuned learning rate) is trained at every λ of
    ``rate_lambdas``. Each from one seed, for ``student.epochs``, scored on the validation split. ``match`` is the
    accuracy margin of the matched comparisons (:func:`kdlib.stages.front.matched`).
    """

    taus: list[Annotated[float, Field(gt=0.0)]] = Field(min_length=2)
    rate_lambdas: list[Annotated[float, Field(ge=0.0)]]
    seed: int = Field(ge=0)
    match: float = Field(ge=0.0, le=1.0)


class SpikesParams(_Section):
    """The spike analysis: time steps, the conversion baseline, early exit and noise."""

    max_steps: int = Field(ge=1, le=1024)
    conversion_steps: list[Annotated[int, Field(ge=1, le=4096)]] = Field(min_length=1)
    percentile: float = Field(gt=0.0, le=100.0)
    calibration_images: int = Field(ge=1)
    exit_thresholds: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(min_length=1)
    noise_seed: int = Field(ge=0)


class LoihiParams(_Section):
    """Stage 4: the stage-2 students in Loihi's fixed point, the SLAYER baseline, and how Lava runs are chunked.

    Every spiking student of stage 2 is mapped onto Loihi's integers (:mod:`kdlib.loihi.fixed_point`) and run in
    Lava. The SLAYER baseline is a network of lava-dl's own, trained on the chip's arithmetic; the field
    names that :func:`kdlib.kd.distill.distill` reads for it (``steps``, ``encoding``, ``epochs``,
    ``batch_size``, ``lr``, ``weight_decay``, ``max_shift``) mean what they mean in the student section.
    """

    datasets: list[Dataset] = Field(min_length=1)
    # the deployment of the stage-2 students: graded input messages of these many bits (the candidates; each
    # student takes the one with the best validation accuracy), integer scales set on calibration_images
    # validation images, lava_images test images per student in Lava (the best student runs on all of them)
    input_bits: list[Annotated[int, Field(ge=1, le=8)]] = Field(min_length=1)
    calibration_images: int = Field(ge=1)
    lava_images: int = Field(ge=1)
    baseline: list[Dataset]  # datasets on which the SLAYER baseline is trained too (each in loihi.datasets)
    variant: str  # the variant whose objective trains the SLAYER baseline (its stage-2 student goes to NIR)
    hidden: list[int] = Field(min_length=1)
    steps: int = Field(ge=1, le=256)  # time steps per image, on the chip as in training
    encoding: Literal["rate"] = "rate"  # not a choice: Loihi takes binary spikes, so the image is rate-coded
    threshold: float = Field(gt=0.0, le=1000.0)  # SLAYER units: Loihi's vThMant / 64
    current_decay: float = Field(ge=0.0, le=1.0)  # fraction lost per step: Loihi's iDecay / 4096
    voltage_decay: float = Field(ge=0.0, le=1.0)  # fraction lost per step: Loihi's vDecay / 4096
    # SLAYER's surrogate spike gradient, scale_grad / 2ρ · exp(-|v - threshold| / ρ) with ρ = tau_grad · threshold
    # (training only: SLAYER's defaults of 1 and 1 are too flat here and left the MNIST student near 93 %)
    tau_grad: float = Field(gt=0.0)
    scale_grad: float = Field(gt=0.0)
    logit_scale: float = Field(gt=0.0)  # logits = logit_scale × output spike counts
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0.0)  # high: an update must cross an 8-bit step to change the network
    weight_decay: float = Field(ge=0.0)
    max_shift: int = Field(ge=0, le=4)
    seed: int = Field(ge=0)
    chunk_size: int = Field(ge=1)  # test images per Lava run (bounds its memory)


class Params(_Section):
    """The whole of ``params.yaml``."""

    data: DataParams
    teacher: TeacherParams
    student: StudentParams
    variants: dict[str, SerializeAsAny[VariantParams]]  # each entry validated by its loss's schema (VARIANTS)
    distill: DistillParams
    tune: TuneParams
    front: FrontParams
    spikes: SpikesParams
    loihi: LoihiParams

    @field_validator("variants", mode="wrap")
    @classmethod
    def _variant_schemas(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return handler(_variants_adapter().validate_python(value, strict=True))


def student_for(student: StudentParams, variants: dict[str, Any], name: str, dataset: str,
                source: str = "params.yaml") -> StudentParams:
    """The student of variant ``name`` on ``dataset``: the student section, then its per-dataset values,
    then the variant's own ``student`` overrides."""
    base = student.for_dataset(dataset).model_dump(exclude={"per_dataset"})
    try:
        return StudentParams.model_validate(base | variants[name].student)
    except ValidationError as err:
        raise _format(err, f"variants.{name}.student", source) from None


def _check_references(params: Params, source: str) -> None:
    """Every variant the stage runs is defined, and every variant's student overrides are valid."""
    seeds = params.distill.seeds
    for i, seed in enumerate(seeds):
        if seed in seeds[:i]:
            raise ParamsError(f"{source}: distill.seeds.{i} = {seed}: listed twice; give each seed once")
    for i, name in enumerate(params.distill.variants):
        if name not in params.variants:
            raise ParamsError(f"{source}: distill.variants.{i} = {name!r}: not defined under variants "
                              f"(defined: {', '.join(params.variants)})")
    for name in params.variants:
        for dataset in params.data.datasets:
            student_for(params.student, params.variants, name, dataset, source)
    loihi = params.loihi
    for i, dataset in enumerate(loihi.datasets):
        if dataset not in params.data.datasets:
            raise ParamsError(f"{source}: loihi.datasets.{i} = {dataset!r}: not in data.datasets "
                              f"({', '.join(params.data.datasets)})")
    for i, dataset in enumerate(loihi.baseline):
        if dataset not in loihi.datasets:
            raise ParamsError(f"{source}: loihi.baseline.{i} = {dataset!r}: not in loihi.datasets "
                              f"({', '.join(loihi.datasets)})")
    if loihi.variant not in params.distill.variants:
        raise ParamsError(f"{source}: loihi.variant = {loihi.variant!r}: not one of distill.variants "
                          f"({', '.join(params.distill.variants)}); its student of the first seed is written as NIR")
    neuron = student_for(params.student, params.variants, loihi.variant, loihi.datasets[0], source).neuron
    if neuron != "lif":
        raise ParamsError(f"{source}: loihi.variant = {loihi.variant!r}: its student has {neuron!r} neurons; "
                          "NIR's LIF node needs a 'lif' student")


class SearchRange(NamedTuple):
    """One key's range in ``tune.space``."""

    low: float
    high: float
    log: bool


def search_range(value: list[Any], where: str = "tune.space") -> SearchRange:
    """Parse ``[low, high]`` or ``[low, high, log]``; raise :class:`ParamsError` naming ``where`` otherwise."""
    numbers = [v for v in value[:2] if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(value) not in (2, 3) or len(numbers) != 2 or (len(value) == 3 and value[2] != "log"):
        hint = ("; YAML reads a number such as 1e-3 as text: write 1.0e-3" if any(isinstance(v, str) and
                                                                                  v != "log" for v in value) else "")
        raise ParamsError(f"{where} = {value!r}: give [low, high] or [low, high, log] with numbers low < high{hint}")
    low, high = map(float, numbers)
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ParamsError(f"{where} = {value!r}: the range is empty or reversed; give [low, high] with low < high")
    if len(value) == 3 and low <= 0:
        raise ParamsError(f"{where} = {value!r}: a log range needs low > 0")
    return SearchRange(low, high, len(value) == 3)


def searchable(variant: VariantParams) -> dict[str, str]:
    """The keys ``tune.space`` may search for ``variant``, each with what it sets: ``lr`` and the variant's float
    fields, with its temperatures searched so that the variant stays what it is: plain KD (τ_S = τ_T in its entry)
    through ``tau``, heterogeneous KD (τ_S < τ_T) through ``tau_teacher`` and ``tau_ratio``."""
    keys = {"lr": TUNE_KEYS["lr"]}
    fields = {f: info for f, info in type(variant).model_fields.items()
              if f not in FIXED_FIELDS and info.annotation is float}
    temperatures = {"tau_teacher", "tau_student"}
    keys |= {f: f"variants.<name>.{f}" for f in fields if f not in temperatures}
    if temperatures <= set(fields):
        if variant.tau_student == variant.tau_teacher:  # type: ignore[attr-defined]
            keys["tau"] = TUNE_KEYS["tau"]
        else:
            keys |= {"tau_teacher": "variants.<name>.tau_teacher", "tau_ratio": TUNE_KEYS["tau_ratio"]}
    return keys


def apply_tuned(variant: VariantParams, values: dict[str, float]) -> VariantParams:
    """``variant`` with searched ``values`` set (keys of :func:`searchable`); ``lr`` becomes a student override.

    Raises ``KeyError`` for a key the variant has not, ``ValidationError`` for a value outside its field.
    """
    allowed = searchable(variant)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise KeyError(f"{', '.join(unknown)} (allowed: {', '.join(allowed)})")
    fields = {k: v for k, v in values.items() if k not in TUNE_KEYS}
    if "tau" in values:
        fields |= {"tau_teacher": values["tau"], "tau_student": values["tau"]}
    if "tau_ratio" in values:
        teacher = fields.get("tau_teacher", getattr(variant, "tau_teacher", None))
        fields["tau_student"] = values["tau_ratio"] * teacher
    student = variant.student | ({"lr": values["lr"]} if "lr" in values else {})
    return type(variant).model_validate(variant.model_dump() | fields | {"student": student})


def _check_tune(params: Params, source: str) -> None:
    """Every distilled variant has a search space, each range is a non-empty interval of values its key may
    take, and every key is one its variant has."""
    tune = params.tune
    for name in params.distill.variants:
        if name not in tune.space:
            raise ParamsError(f"{source}: tune.space.{name}: missing; every variant of distill.variants needs a "
                              f"search space (keys allowed: {', '.join(searchable(params.variants[name]))})")
    for name, space in tune.space.items():
        if name not in params.variants:
            raise ParamsError(f"{source}: tune.space.{name}: not defined under variants "
                              f"(defined: {', '.join(params.variants)})")
        if not space:
            raise ParamsError(f"{source}: tune.space.{name} = {{}}: empty; give at least 'lr'")
        variant = params.variants[name]
        allowed = searchable(variant)
        for key, value in space.items():
            if key not in allowed:
                raise ParamsError(f"{source}: tune.space.{name}.{key}: {key!r} is not a hyperparameter of variant "
                                  f"{name!r} (allowed: {', '.join(allowed)})")
            low, high, _ = search_range(value, f"{source}: tune.space.{name}.{key}")
            where = f"{source}: tune.space.{name}.{key} = {value!r}"
            if key == "lr" and low <= 0:
                raise ParamsError(f"{where}: a learning rate must be > 0")
            for end in (low, high):
                try:
                    apply_tuned(variant, {key: end})
                except ValidationError as err:
                    msg = err.errors()[0]["msg"]
                    raise ParamsError(f"{where}: {end} is not allowed for {key} ({msg})") from None
                if key == "tau_ratio" and end >= 1:
                    raise ParamsError(f"{where}: heterogeneous KD needs tau_student < tau_teacher; allowed: 0 < "
                                      "tau_ratio < 1")
    front = params.front
    if len(set(front.taus)) < 2:
        raise ParamsError(f"{source}: front.taus = {front.taus}: give at least two different temperatures, so that "
                          "the front has heterogeneous pairs (tau_student < tau_teacher)")
    for name, loss in (("kd", "kd"), ("rate_reg", "rate_reg")):
        if name == "rate_reg" and not front.rate_lambdas:
            continue
        if name not in params.variants or params.variants[name].loss != loss:
            raise ParamsError(f"{source}: front: needs a variant {name!r} with loss: {loss} under variants, whose "
                              "student it trains across its front")
        if tune.use == "tuned" and name not in params.distill.variants:
            raise ParamsError(f"{source}: front: trains {name!r} with its tuned values, but {name!r} is not in "
                              "distill.variants (so it has no study); add it, or set tune.use: hand-set")
    if params.variants["kd"].tau_student != params.variants["kd"].tau_teacher:
        raise ParamsError(f"{source}: variants.kd: tau_student = {params.variants['kd'].tau_student} differs from "
                          f"tau_teacher = {params.variants['kd'].tau_teacher}; the front's plain KD has equal "
                          "temperatures (heterogeneous KD is hetero_kd)")
    if tune.prune_after >= tune.epochs and tune.epochs > 1:
        raise ParamsError(f"{source}: tune.prune_after = {tune.prune_after}: no epoch is left to prune after with "
                          f"tune.epochs = {tune.epochs}; allowed: 1 to {tune.epochs - 1}")


def _check_sizes(params: Params, source: str) -> None:
    """The validation split leaves training images, and every batch fits in the training split."""
    val_size = params.data.val_size
    for dataset in params.data.datasets:
        total = TRAIN_IMAGES[dataset]
        val = DEFAULT_VAL_SIZE[dataset] if val_size is None else val_size
        if val >= total:
            raise ParamsError(f"{source}: data.val_size = {val}: must be smaller than the {total:,} training "
                              f"images of {dataset}, to leave some for training (allowed: 1 to {total - 1})")
        train = total - val
        sizes = {"teacher.batch_size": params.teacher.for_dataset(dataset).batch_size}
        for name in params.distill.variants:
            sizes[f"variants.{name} (student.batch_size)"] = student_for(
                params.student, params.variants, name, dataset, source).batch_size
        if dataset in params.loihi.baseline:
            sizes["loihi.batch_size"] = params.loihi.batch_size
        for key, size in sizes.items():
            if size > train:
                raise ParamsError(f"{source}: {key} = {size}: larger than the {train:,} training images of "
                                  f"{dataset} after data.val_size = {val}; allowed: 1 to {train}")


def _check_overrides(params: _Section, source: str) -> None:
    """Validate every ``per_dataset`` override as if it were written in its section."""
    for section, value in params:
        if isinstance(value, _PerDataset):
            for dataset in value.per_dataset:
                try:
                    value.for_dataset(dataset)
                except ValidationError as err:
                    raise _format(err, f"{section}.per_dataset.{dataset}", source) from None


def _format(err: ValidationError, prefix: str, source: str) -> ParamsError:
    lines = []
    for e in err.errors():
        path = [*(prefix.split(".") if prefix else []), *map(str, e["loc"])]
        # a variant's errors carry its loss tag (variants.<name>.<loss>.<key>): drop the tag
        if path[:1] == ["variants"] and len(path) > 3 and path[2] in VARIANTS:
            del path[2]
        key = ".".join(path)
        value = "(missing)" if e["type"] == "missing" else repr(e["input"])
        lines.append(f"{source}: {key} = {value}: {e['msg']}")
    return ParamsError("\n".join(lines))


def validate(model: type[_Section], values: Any, *, prefix: str = "", source: str = "params.yaml") -> Any:
    """Validate ``values`` against ``model``; raise :class:`ParamsError` naming every bad key."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise _format(err, prefix, source) from None


def check_dataset(params: Params, dataset: str) -> None:
    """Refuse, naming it, a ``dataset`` that ``data.datasets`` does not list (a stage's command-line argument)."""
    if dataset not in params.data.datasets:
        raise ParamsError(f"dataset = {dataset!r}: not in data.datasets ({', '.join(params.data.datasets)})")


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run from the workbook folder.") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from None
    params = validate(Params, raw, source=path.name)
    _check_overrides(params, path.name)
    _check_references(params, path.name)
    _check_tune(params, path.name)
    _check_sizes(params, path.name)
    return params


def quick() -> Params:
    """The study's fast twin, ``params.quick.yaml``: what a notebook opened by hand and the tests run."""
    return load(QUICK_FILE)


def quick_section(name: str, **overrides: Any) -> Any:
    """One section of :func:`quick` with ``overrides`` applied and validated (a test's small variation)."""
    section = getattr(quick(), name)
    return validate(type(section), section.model_dump() | overrides, prefix=name, source=QUICK_FILE.name)


def notebook_section(model: type[_Section], values: Any, name: str, dataset: str | None = None) -> Any:
    """Validate a section injected into a notebook as a dict (the notebook's ``parameters`` cell).

    With ``dataset``, the section's ``per_dataset`` overrides for it are applied.
    """
    source = "notebook parameters"
    section = validate(model, values, prefix=name, source=source)
    if dataset is None or not isinstance(section, _PerDataset):
        return section
    try:
        return section.for_dataset(dataset)
    except ValidationError as err:
        raise _format(err, f"{name}.per_dataset.{dataset}", source) from None


def notebook_variant(values: Any, name: str) -> Any:
    """Validate one variant entry injected into a notebook (``variants.<name>`` of ``params.yaml``)."""
    try:
        return _variants_adapter().validate_python({name: values}, strict=True)[name]
    except ValidationError as err:
        raise _format(err, "variants", "notebook parameters") from None


def dataset_name(value: Any) -> str:
    """Validate a single dataset name given to a notebook or a stage."""
    if value not in DATASETS:
        raise ParamsError(f"dataset = {value!r}: unknown dataset; choose one of {', '.join(DATASETS)}")
    return value


def run_parameters(**sections: Any) -> pd.DataFrame:
    """The parameters one stage run received, as the table its report opens with: one row per key,
    named ``section.key`` (nested values flattened with dots), with the value as the run used it.

    A section is a validated parameter model, a dict or a plain value.
    """
    import pandas as pd

    rows: dict[str, Any] = {}

    def add(name: str, value: Any) -> None:
        if hasattr(value, "model_dump"):
            value = value.model_dump()
        if isinstance(value, dict):
            if not value:
                return
            for key, item in value.items():
                add(f"{name}.{key}", item)
        elif isinstance(value, str | Path) and Path(value).is_absolute() and Path(value).is_relative_to(WORKBOOK):
            rows[name] = Path(value).relative_to(WORKBOOK).as_posix() or "."  # the same on every clone
        else:
            rows[name] = ", ".join(map(str, value)) if isinstance(value, list | tuple) else value

    for name, value in sections.items():
        add(name, value)
    return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=pd.Index(list(rows), name="parameter"))
