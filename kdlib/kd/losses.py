"""Training objectives of the distillation variants (docs/methods.md).

Notation: teacher logits z_T and hidden activations h_T^l; student outputs o_t per step, logits
z_S = mean_t o_t, hidden spikes s_t^l and firing rates r^l = mean_t s_t^l.

An objective is an ``nn.Module``: what it learns besides the student (spike decoders, regressors)
are its submodules, so the training loop optimises them with the student. Every objective maps the
student's :class:`~kdlib.snn.students.SpikingOutput`, the labels and the teacher's
:class:`~kdlib.snn.teachers.ModelOutput` (its logits and hidden activations) to a scalar loss and a dict
of its named parts (for logging).
Adding a method is one objective class, registered with :func:`register` (its loss tag, its parameters'
schema and how it is built from them), plus one entry in ``params.yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.core import params as P
from kdlib.snn.students import SpikingOutput
from kdlib.snn.teachers import ModelOutput


# ------------------------------------------------------------------------------------------- primitives
def kd_loss(student_logits: Tensor, teacher_logits: Tensor, tau_teacher: float, tau_student: float) -> Tensor:
    """τ_T·τ_S·KL(softmax(z_T/τ_T) ‖ softmax(z_S/τ_S)), averaged over the batch.

    With τ_T = τ_S = τ this is the τ²-scaled loss of Hinton et al., "Distilling the Knowledge in a
    Neural Network" (2015). With τ_S < τ_T the student matches the teacher's distribution with logits
    smaller by τ_S/τ_T: the heterogeneous temperatures of Lee et al., "Energy-efficient knowledge
    distillation for spiking neural networks" (2021), read as lower output magnitudes, fewer spikes.
    """
    log_p_teacher = F.log_softmax(teacher_logits / tau_teacher, dim=-1)
    log_p_student = F.log_softmax(student_logits / tau_student, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return tau_teacher * tau_student * kl


def attention_map(activation: Tensor, width: int | None = None) -> Tensor:
    """L2-normalised attention map of a layer (Zagoruyko & Komodakis, "Paying More Attention to Attention").

    Convolutional (B, C, H, W): the channel sum of squared activations, flattened over H·W. Dense
    (B, N): the squared units. ``width`` average-pools a longer map to the student's length (for dense
    layers of different widths; the workbook's interpretation, see the distillation notebook).
    """
    a = activation.pow(2)
    a = a.sum(1).flatten(1) if a.dim() == 4 else a.flatten(1)
    if width is not None and a.shape[1] != width:
        a = F.adaptive_avg_pool1d(a.unsqueeze(1), width).squeeze(1)
    return F.normalize(a, dim=1)


class SpikeDecoder(nn.Module):
    """D(s) = W·(Σ_t w_t s_t) + b: a learned temporal weighting of a spike train, then a linear map to
    the teacher's width (the decoder of Liu & Yi's DNN-to-SNN distillation). Spikes are flattened."""

    def __init__(self, steps: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.time_weights = nn.Parameter(torch.full((steps,), 1.0 / steps))
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, spikes: Tensor) -> Tensor:
        return self.linear(torch.einsum("t,tbn->bn", self.time_weights, spikes.flatten(2)))


class RateRegressor(nn.Module):
    """R(r) = W·r + b: a linear regressor from a layer's firing rates to the teacher's activations (KDSNN)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, spikes: Tensor) -> Tensor:
        return self.linear(spikes.flatten(2).mean(0))


# ------------------------------------------------------------------------------------------- objectives
class Shapes(NamedTuple):
    """What an objective's parts are sized by: time steps, and the student's and teacher's hidden widths."""

    steps: int
    student_widths: Sequence[int]
    teacher_widths: Sequence[int]


# The objectives by loss tag (``variants.<name>.loss`` of params.yaml); filled by :func:`register`.
OBJECTIVES: dict[str, type[Objective]] = {}


def register(objective: type[Objective]) -> type[Objective]:
    """Make ``objective`` the objective of the variants whose ``loss`` is ``objective.loss``.

    Its schema ``objective.Params`` (a :class:`kdlib.core.params.VariantParams` with that tag) is registered with
    :func:`kdlib.core.params.register_variant`, so that ``params.yaml`` entries of the new loss validate.
    """
    P.register_variant(objective.Params)
    tags = get_args(objective.Params.model_fields["loss"].annotation)
    if objective.loss not in tags:
        raise ValueError(f"{objective.__name__}.loss = {objective.loss!r} is not a tag of "
                         f"{objective.Params.__name__} ({', '.join(map(repr, tags))})")
    if OBJECTIVES.get(objective.loss, objective) is not objective:
        raise ValueError(f"loss {objective.loss!r} already has the objective {OBJECTIVES[objective.loss].__name__}")
    OBJECTIVES[objective.loss] = objective
    return objective


@register
class Objective(nn.Module):
    """Cross-entropy on the student's logits (scratch, ste); the base of every objective.

    A subclass names its loss tag (``loss``) and its parameters' schema (``Params``), builds itself from a
    validated entry (:meth:`from_variant`) and is made known with :func:`register`.
    """

    loss: ClassVar[str] = "ce"
    Params: ClassVar[type[P.VariantParams]] = P.CEVariant
    uses_teacher: ClassVar[bool] = False  # needs the teacher's ModelOutput
    trains_teacher: ClassVar[bool] = False  # the teacher is fine-tuned with the student (it must not be frozen/cached)
    feature_layers: tuple[int, ...] = ()  # teacher hidden layers the objective reads

    @classmethod
    def from_variant(cls, variant: Any, shapes: Shapes) -> Objective:
        """The objective of a validated variant entry (an instance of ``cls.Params``)."""
        return cls()

    def forward(self, out: SpikingOutput, labels: Tensor, teacher: ModelOutput | None) -> tuple[Tensor, dict]:
        ce = F.cross_entropy(out.logits, labels)
        return ce, {"ce": ce.detach()}


@register
class RateRegularised(Objective):
    """CE(z_S, y) + λ·r̄, r̄ the mean firing rate over every hidden neuron, step and image: fewer spikes asked
    for directly, the control against which heterogeneous-temperature KD's saving is judged."""

    loss = "rate_reg"
    Params = P.RateRegVariant

    def __init__(self, rate_lambda: float) -> None:
        super().__init__()
        self.rate_lambda = rate_lambda

    @classmethod
    def from_variant(cls, variant: Any, shapes: Shapes) -> Objective:
        return cls(variant.rate_lambda)

    def forward(self, out: SpikingOutput, labels: Tensor, teacher: ModelOutput | None) -> tuple[Tensor, dict]:
        ce = F.cross_entropy(out.logits, labels)
        rate = torch.cat([s.flatten(2) for s in out.spikes], dim=2).mean()
        return ce + self.rate_lambda * rate, {"ce": ce.detach(), "rate": rate.detach()}


@register
class Distillation(Objective):
    """(1−α)·CE(z_S, y) + α·KD(z_T, z_S; τ_T, τ_S)."""

    loss = "kd"
    Params = P.KDVariant
    uses_teacher = True

    def __init__(self, alpha: float, tau_teacher: float, tau_student: float) -> None:
        super().__init__()
        self.alpha, self.tau_teacher, self.tau_student = alpha, tau_teacher, tau_student

    @classmethod
    def from_variant(cls, variant: Any, shapes: Shapes) -> Objective:
        return cls(variant.alpha, variant.tau_teacher, variant.tau_student)

    def forward(self, out: SpikingOutput, labels: Tensor, teacher: ModelOutput | None) -> tuple[Tensor, dict]:
        assert teacher is not None
        ce = F.cross_entropy(out.logits, labels)
        kd = kd_loss(out.logits, teacher.logits.detach(), self.tau_teacher, self.tau_student)
        return (1 - self.alpha) * ce + self.alpha * kd, {"ce": ce.detach(), "kd": kd.detach()}


class _FeatureDistillation(Distillation):
    """Distillation + β · Σ_l feature_term(l); ``layers`` pairs student layer l with teacher layer l.

    A subclass's ``__init__`` takes the KD terms, ``beta``, ``layers`` and the :class:`Shapes` it needs."""

    Params = P.FeatureKDVariant

    def __init__(self, alpha: float, tau_teacher: float, tau_student: float, beta: float,
                 layers: Sequence[int]) -> None:
        super().__init__(alpha, tau_teacher, tau_student)
        self.beta, self.feature_layers = beta, tuple(layers)

    @classmethod
    def from_variant(cls, variant: Any, shapes: Shapes) -> Objective:
        return cls(**cls._arguments(variant, shapes))

    @classmethod
    def _arguments(cls, variant: Any, shapes: Shapes) -> dict[str, Any]:
        """The keyword arguments of ``__init__`` for ``variant``, once its layers are checked."""
        hidden = min(len(shapes.student_widths), len(shapes.teacher_widths))
        for layer in variant.layers:
            if not 0 <= layer < hidden:
                raise ValueError(f"layers: {layer} is not a hidden layer of both student and teacher (student has "
                                 f"{len(shapes.student_widths)}, teacher {len(shapes.teacher_widths)})")
        return {"alpha": variant.alpha, "tau_teacher": variant.tau_teacher, "tau_student": variant.tau_student,
                "beta": variant.beta, "layers": variant.layers, **cls._sized(shapes)}

    @classmethod
    def _sized(cls, shapes: Shapes) -> dict[str, Any]:
        """The :class:`Shapes` fields this objective's ``__init__`` takes."""
        return {}

    def feature_term(self, i: int, spikes: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, out: SpikingOutput, labels: Tensor, teacher: ModelOutput | None) -> tuple[Tensor, dict]:
        loss, parts = super().forward(out, labels, teacher)
        assert teacher is not None
        feat = sum(self.feature_term(i, out.spikes[layer], teacher.features[layer].detach())
                   for i, layer in enumerate(self.feature_layers))
        parts["feature"] = feat.detach()
        return loss + self.beta * feat, parts


@register
class DecoderDistillation(_FeatureDistillation):
    """KD + β·Σ_l MSE(D_l(s^l), h_T^l) with a trainable :class:`SpikeDecoder` per layer (Liu & Yi)."""

    loss = "decoder_kd"

    def __init__(self, alpha: float, tau_teacher: float, tau_student: float, beta: float, layers: Sequence[int],
                 steps: int, student_widths: Sequence[int], teacher_widths: Sequence[int]) -> None:
        super().__init__(alpha, tau_teacher, tau_student, beta, layers)
        self.decoders = nn.ModuleList(SpikeDecoder(steps, student_widths[i], teacher_widths[i]) for i in layers)

    @classmethod
    def _sized(cls, shapes: Shapes) -> dict[str, Any]:
        return shapes._asdict()

    def feature_term(self, i: int, spikes: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(self.decoders[i](spikes), target.flatten(1))


@register
class AttentionDistillation(_FeatureDistillation):
    """KD + β·Σ_l ‖A(r^l) − A(h_T^l)‖₂ with parameter-free attention maps (LaSNN, layer-wise)."""

    loss = "attention_kd"

    def feature_term(self, i: int, spikes: Tensor, target: Tensor) -> Tensor:
        rates = spikes.mean(0)
        student_map = attention_map(rates)
        return (student_map - attention_map(target, student_map.shape[1])).norm(dim=1).mean()


@register
class JointDistillation(_FeatureDistillation):
    """(1−α)·CE + α·KD + β·Σ_l MSE(R_l(r^l), h_T^l) with a learned :class:`RateRegressor` (KDSNN)."""

    loss = "joint_kd"

    def __init__(self, alpha: float, tau_teacher: float, tau_student: float, beta: float, layers: Sequence[int],
                 student_widths: Sequence[int], teacher_widths: Sequence[int]) -> None:
        super().__init__(alpha, tau_teacher, tau_student, beta, layers)
        self.regressors = nn.ModuleList(RateRegressor(student_widths[i], teacher_widths[i]) for i in layers)

    @classmethod
    def _sized(cls, shapes: Shapes) -> dict[str, Any]:
        return {"student_widths": shapes.student_widths, "teacher_widths": shapes.teacher_widths}

    def feature_term(self, i: int, spikes: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(self.regressors[i](spikes), target.flatten(1))


@register
class BidirectionalDistillation(DecoderDistillation):
    """Decoder KD for the student, and the teacher fine-tuned at the same time with
    CE(z_T, y) + γ·KD(z_S, z_T; τ, τ) so that it adapts to the student (Liu & Yi's reverse path)."""

    loss = "bidirectional_kd"
    Params = P.BidirectionalVariant
    trains_teacher = True

    def __init__(self, gamma: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma = gamma

    @classmethod
    def from_variant(cls, variant: Any, shapes: Shapes) -> Objective:
        return cls(variant.gamma, **cls._arguments(variant, shapes))

    def forward(self, out: SpikingOutput, labels: Tensor, teacher: ModelOutput | None) -> tuple[Tensor, dict]:
        loss, parts = super().forward(out, labels, teacher)  # every teacher target is detached there
        assert teacher is not None
        teacher_ce = F.cross_entropy(teacher.logits, labels)
        reverse = kd_loss(teacher.logits, out.logits.detach(), self.tau_student, self.tau_teacher)
        parts |= {"teacher_ce": teacher_ce.detach(), "reverse_kd": reverse.detach()}
        return loss + teacher_ce + self.gamma * reverse, parts


class PerStep(Objective):
    """An objective applied at every step t to the running mean of the outputs up to t, averaged over the steps
    (the last term is the objective on the final logits). The student is asked to be right early, as with the
    TET loss that SEENN's released code trains with ("SEENN: Towards Temporal Spiking Early-Exit Neural
    Networks"); feature terms, which read the whole spike train, are the same at every step.
    """

    def __init__(self, objective: Objective) -> None:
        super().__init__()
        self.objective = objective
        self.uses_teacher = objective.uses_teacher  # type: ignore[misc]  # the wrapped objective's
        self.trains_teacher = objective.trains_teacher  # type: ignore[misc]
        self.feature_layers = objective.feature_layers

    def forward(self, out: SpikingOutput, labels: Tensor, teacher: ModelOutput | None) -> tuple[Tensor, dict]:
        steps = out.outputs.shape[0]
        terms = [self.objective(SpikingOutput(out.outputs[: t + 1], out.spikes), labels, teacher)
                 for t in range(steps)]
        loss = torch.stack([loss for loss, _ in terms]).mean()
        return loss, {"final": terms[-1][0].detach(), **terms[-1][1]}


def build_objective(variant: Any, steps: int, student_widths: Sequence[int],
                    teacher_widths: Sequence[int]) -> Objective:
    """The objective of a validated variant entry of ``params.yaml``, found by its ``loss`` in :data:`OBJECTIVES`
    (wrapped in :class:`PerStep` where the entry asks for ``per_step``)."""
    if variant.loss not in OBJECTIVES:
        raise ValueError(f"loss = {variant.loss!r}: no objective is registered for it "
                         f"(registered: {', '.join(OBJECTIVES)}); register one with kdlib.kd.losses.register")
    objective = OBJECTIVES[variant.loss].from_variant(variant, Shapes(steps, student_widths, teacher_widths))
    return PerStep(objective) if variant.per_step else objective
