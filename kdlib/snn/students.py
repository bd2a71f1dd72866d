"""Spiking students: one interface for every neuron model and architecture.

A student maps an input sequence ``x_seq`` of shape (T, B, *input_shape) to a
:class:`SpikingOutput`: the output layer's value at every step and the spikes of every spiking
layer. Losses, spike counts, synaptic operations and energy estimates are written once against it.

Layers are evaluated one after the other over the whole sequence: the synaptic input of a layer for
all T steps is one batched operation on the (T·B, features) spike tensor of the layer below (and is
computed only once when the input is constant over time, as with direct encoding); only the
membrane update runs step by step.

Neuron models
-------------
Each model is a typed tuple of its constants (:class:`LIFParameters`, :class:`LeakySTEParameters`,
:class:`BinarySTEParameters`; :func:`neuron_parameters` maps the ``student.neuron`` name onto them), and
:class:`SpikingNeurons` runs it with an explicit :data:`Backend`.

``lif``
    Leaky integrate-and-fire without synaptic current (norse's ``lif_box_feed_forward_step``),
    reset to zero, trained with norse's SuperSpike surrogate gradient (Zenke & Ganguli, "SuperSpike:
    Supervised learning in multi-layer spiking neural networks", 2018): 1/(|v − v_th| + 1)². norse
    1.1.0 ignores the ``alpha`` sharpness it accepts, so the workbook exposes none.
``ste-continuous`` / ``ste-discontinuous``
    Binary activations with a straight-through gradient, after Yin et al., "Algorithm and Hardware
    Design of Discrete-Time Spiking Neural Networks Based on Back Propagation with Binary
    Activations" (2017). *Continuous integration* carries a leaky membrane across steps (reset by
    subtraction); *discontinuous integration* thresholds each step's input on its own, so every step
    is an independent binary network evaluated on one rate-coded sample of the image.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

with warnings.catch_warnings():  # norse 1.1.0 scripts functions with the deprecated torch.jit.script on import
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.script.*")
    from norse.torch.functional.lif_box import (
        LIFBoxFeedForwardState,
        LIFBoxParameters,
        lif_box_feed_forward_step,
    )

from kdlib.core.io import load_model, save_torch
from kdlib.core.params import PIXELS, StudentParams
from kdlib.snn import native


class LIFParameters(NamedTuple):
    """``lif``: leaky integrate-and-fire without synaptic current (norse's LIF box), v' = v + (I − v)/τ, a spike
    where v' > v_th, reset to zero; SuperSpike surrogate gradient."""

    tau_mem: float  # membrane time constant, in time steps
    v_th: float


class LeakySTEParameters(NamedTuple):
    """``ste-continuous``: a leaky membrane carried across steps, v' = (1 − 1/τ)·v + I, a spike where v' > v_th,
    reset by subtraction; straight-through gradient."""

    tau_mem: float
    v_th: float


class BinarySTEParameters(NamedTuple):
    """``ste-discontinuous``: every step thresholded on its own, a spike where I > v_th; straight-through gradient."""

    v_th: float


NeuronParameters = LIFParameters | LeakySTEParameters | BinarySTEParameters
# Which code runs the LIF membrane: the compiled kernel of kdlib.snn.native, the eager PyTorch loop (same numbers,
# the fallback without a C compiler), norse's own step function (the reference), or "auto": the kernel where it
# is usable, else the eager loop. The straight-through neurons always run in PyTorch.
Backend = Literal["auto", "native", "torch", "norse"]
BACKENDS: tuple[str, ...] = ("auto", "native", "torch", "norse")


def neuron_parameters(cfg: StudentParams) -> NeuronParameters:
    """The neuron model that ``cfg.neuron`` names, with the section's constants."""
    if cfg.neuron == "lif":
        return LIFParameters(cfg.tau_mem, cfg.v_th)
    if cfg.neuron == "ste-continuous":
        return LeakySTEParameters(cfg.tau_mem, cfg.v_th)
    return BinarySTEParameters(cfg.v_th)


class SpikingOutput(NamedTuple):
    """``outputs`` (T, B, classes) per step and ``spikes``: one (T, B, *shape) 0/1 tensor per spiking layer."""

    outputs: Tensor
    spikes: list[Tensor]

    @property
    def logits(self) -> Tensor:
        """The rate-decoded output: mean of the outputs over time."""
        return self.outputs.mean(0)


@runtime_checkable
class Student(Protocol):
    """What every spiking network of the workbook offers, whatever its architecture or neuron.

    Called on an input sequence (T, B, *input_shape) it returns a :class:`SpikingOutput`; the three
    counts are what spike and operation counting (:class:`kdlib.measure.spikes.SpikeCounter`) read. Implemented by
    :class:`SpikingMLP`, :class:`SpikingCNN`, the converted ANN (:class:`kdlib.snn.conversion.ConvertedMLP`)
    and the Loihi student (:class:`kdlib.loihi.slayer.LoihiMLP`).
    """

    def __call__(self, x_seq: Tensor) -> SpikingOutput: ...

    def layer_widths(self) -> list[int]:
        """Neurons per spiking layer."""
        ...

    def fan_outs(self) -> list[int]:
        """Synapses driven by one spike of each spiking layer."""
        ...

    def input_fan_out(self) -> int:
        """Synapses driven by one input element."""
        ...


class StraightThrough(torch.autograd.Function):
    """Heaviside step forward; gradient passed straight through where ``|u| <= 1`` (a clipped identity)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, u: Tensor) -> Tensor:
        ctx.save_for_backward(u)
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (u,) = ctx.saved_tensors
        return grad * (u.abs() <= 1).to(grad.dtype)


class _LIFSequence(torch.autograd.Function):
    """norse's LIF-box update (reset to zero, SuperSpike surrogate) over a whole current sequence, with a
    hand-written backward pass through time.

    Numerically the same as calling ``lif_box_feed_forward_step`` once per step (tests check values and
    gradients against it), but the T steps run without building an autograd graph per step. On the CPU
    the steps run in the compiled kernel of :mod:`kdlib.snn.native`; elsewhere (or without a C compiler) in the
    eager loop below, which computes the same operations in the same order. The loop writes every step
    into buffers allocated once per call (fresh step-sized tensors cost the CPU more than the arithmetic)
    and keeps spikes as 0/1 floats throughout (operations on boolean masks are several times slower there).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, current: Tensor, tau_mem: float, v_th: float,
                use_native: bool) -> Tensor:
        keep, gain = 1.0 - 1.0 / tau_mem, 1.0 / tau_mem
        if use_native:
            potentials, spikes = native.lif_forward(current, keep, gain, v_th)
        else:
            potentials, spikes = torch.empty_like(current), torch.empty_like(current)
            v = torch.zeros_like(current[0])  # the membrane after the previous step's reset
            for t in range(current.shape[0]):
                pot = torch.add(v.mul_(keep), current[t], alpha=gain, out=potentials[t])  # v' = v + (I − v)/τ
                z = torch.gt(pot, v_th, out=spikes[t])  # 0/1 floats: boolean masks are slow on the CPU
                torch.addcmul(pot, pot, z, value=-1.0, out=v)  # reset to zero: v' − v'·z is exactly 0 or v'
        ctx.save_for_backward(potentials, spikes)
        ctx.tau_mem, ctx.v_th, ctx.use_native = tau_mem, v_th, use_native
        return spikes

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_spikes: Tensor) -> tuple[Tensor, None, None, None]:
        potentials, spikes = ctx.saved_tensors
        keep, gain = 1.0 - 1.0 / ctx.tau_mem, 1.0 / ctx.tau_mem
        if ctx.use_native:
            return native.lif_backward(grad_spikes, potentials, keep, gain, ctx.v_th), None, None, None
        grad_pre = torch.empty_like(potentials)  # dL/dv' of every step (times 1/τ at the end: dL/dI)
        grad_v = torch.zeros_like(potentials[0])  # dL/dv after the reset of step t
        surrogate, survived, through_spike = (torch.empty_like(grad_v) for _ in range(3))
        for t in range(potentials.shape[0] - 1, -1, -1):
            # v_after = (1 − z)·v' and z = H(v' − θ): both paths lead back to v'
            torch.sub(potentials[t], ctx.v_th, out=surrogate).abs_().add_(1.0).pow_(-2)  # SuperSpike 1/(|v'−θ|+1)²
            torch.sub(grad_spikes[t], torch.mul(grad_v, potentials[t], out=through_spike), out=through_spike)
            through_spike.mul_(surrogate)
            torch.neg(spikes[t], out=survived).add_(1.0)
            g = torch.mul(grad_v, survived, out=grad_pre[t]).add_(through_spike)
            torch.mul(g, keep, out=grad_v)
        return grad_pre.mul_(gain), None, None, None


class SpikingNeurons(nn.Module):
    """A population of spiking neurons of one model (``params``) driven by an input current sequence (T, B, *shape).

    ``backend`` chooses the code of the LIF membrane (:data:`Backend`); every backend gives the same spikes and,
    up to the order of floating-point operations, the same gradients (tests check them against norse's step).
    """

    def __init__(self, params: NeuronParameters, backend: Backend = "auto") -> None:
        super().__init__()
        if not isinstance(params, LIFParameters | LeakySTEParameters | BinarySTEParameters):
            raise TypeError(f"params = {params!r}: not a neuron model; use LIFParameters, LeakySTEParameters "
                            "or BinarySTEParameters")
        if backend not in BACKENDS:
            raise ValueError(f"backend = {backend!r}: unknown; choose one of {', '.join(BACKENDS)}")
        if backend not in ("auto", "torch") and not isinstance(params, LIFParameters):
            raise ValueError(f"backend = {backend!r} runs LIF neurons only; {type(params).__name__} runs in PyTorch")
        self.params, self.backend = params, backend

    def forward(self, current: Tensor) -> Tensor:
        p = self.params
        if isinstance(p, BinarySTEParameters):
            return StraightThrough.apply(current - p.v_th)
        if isinstance(p, LeakySTEParameters):
            return _leaky_ste(current, p)
        if self.backend == "norse":
            return _norse_lif(current, p)
        use_native = native.usable(current)
        if self.backend == "native" and not use_native:
            raise RuntimeError("backend = 'native': the compiled LIF kernel is not usable here (no C compiler, "
                               "KDLIB_NATIVE=0, or a tensor off the CPU); use 'auto' or 'torch'")
        use_native = use_native and self.backend != "torch"
        return _LIFSequence.apply(current, p.tau_mem, p.v_th, use_native)

    def extra_repr(self) -> str:
        return f"{self.params}, backend={self.backend}"


def _leaky_ste(current: Tensor, p: LeakySTEParameters) -> Tensor:
    """Leaky integration over the steps, reset by subtraction, straight-through spikes."""
    spikes, v, decay = [], torch.zeros_like(current[0]), 1.0 - 1.0 / p.tau_mem
    for i_t in current:
        v = decay * v + i_t
        z = StraightThrough.apply(v - p.v_th)
        v = v - z * p.v_th
        spikes.append(z)
    return torch.stack(spikes)


def _norse_lif(current: Tensor, p: LIFParameters) -> Tensor:
    """norse's LIF-box step function, one call per time step: the reference the other backends match."""
    params = LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / p.tau_mem), v_th=torch.as_tensor(p.v_th),
                              method="super")
    state, spikes = LIFBoxFeedForwardState(v=torch.zeros_like(current[0])), []
    for i_t in current:
        z, state = lif_box_feed_forward_step(i_t, state, params, dt=1.0)
        spikes.append(z)
    return torch.stack(spikes)


def over_time(layer: nn.Module, x_seq: Tensor) -> Tensor:
    """Apply ``layer`` to every step of ``x_seq`` in one call; once if the input is constant in time."""
    t, b = x_seq.shape[:2]
    if t > 1 and x_seq.stride(0) == 0:  # an expanded (constant) sequence: direct encoding
        y = layer(x_seq[0])
        return y.unsqueeze(0).expand(t, *y.shape)
    y = layer(x_seq.reshape(t * b, *x_seq.shape[2:]))
    return y.reshape(t, b, *y.shape[1:])


class DenseLayers:
    """Widths and fan-outs of a fully connected network: ``synapses`` (``nn.Linear``, one per spiking layer)
    followed by a ``head`` readout. Shared by :class:`SpikingMLP` and the converted ANN of
    :mod:`kdlib.snn.conversion`; spike counting (:class:`kdlib.measure.spikes.SpikeCounter`) reads these."""

    synapses: nn.ModuleList
    head: nn.Linear

    def layer_widths(self) -> list[int]:
        """Neurons per spiking layer."""
        return [s.out_features for s in self.synapses]

    def fan_outs(self) -> list[int]:
        """Synapses driven by one spike of each spiking layer (the next layer's width)."""
        return [layer.out_features for layer in (*self.synapses[1:], self.head)]

    def input_fan_out(self) -> int:
        """Synapses driven by one input element (the first layer's width)."""
        return self.synapses[0].out_features


class SpikingMLP(DenseLayers, nn.Module):
    """Fully connected spiking network: input → [Linear → spiking neurons] × L → Linear readout."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, *, neuron: NeuronParameters,
                 backend: Backend = "auto") -> None:
        super().__init__()
        widths = (in_features, *hidden)
        self.synapses = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.neurons = nn.ModuleList(SpikingNeurons(neuron, backend) for _ in hidden)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x_seq: Tensor) -> SpikingOutput:
        h, spikes = x_seq.flatten(2), []  # flattening keeps a constant (expanded) sequence constant
        for synapse, neurons in zip(self.synapses, self.neurons, strict=True):
            h = neurons(over_time(synapse, h))
            spikes.append(h)
        return SpikingOutput(over_time(self.head, h), spikes)


class SpikingCNN(nn.Module):
    """Convolutional spiking network: two 3×3 conv blocks (conv → neurons → 2×2 average pooling),
    one dense spiking layer and a linear readout."""

    def __init__(self, hidden: int, num_classes: int, *, neuron: NeuronParameters, backend: Backend = "auto",
                 in_channels: int = 1, channels: tuple[int, int] = (16, 32), image_size: int = 28) -> None:
        super().__init__()
        c1, c2 = channels
        self.synapses = nn.ModuleList([
            nn.Conv2d(in_channels, c1, 3, padding=1),
            nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c1, c2, 3, padding=1)),
            nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(c2 * (image_size // 4) ** 2, hidden)),
        ])
        self.neurons = nn.ModuleList(SpikingNeurons(neuron, backend) for _ in range(3))
        self.head = nn.Linear(hidden, num_classes)
        self._shapes = [(c1, image_size, image_size), (c2, image_size // 2, image_size // 2), (hidden,)]

    def forward(self, x_seq: Tensor) -> SpikingOutput:
        h, spikes = x_seq, []
        for synapse, neurons in zip(self.synapses, self.neurons, strict=True):
            h = neurons(over_time(synapse, h))
            spikes.append(h)
        return SpikingOutput(over_time(self.head, h), spikes)

    def layer_widths(self) -> list[int]:
        return [int(torch.tensor(s).prod()) for s in self._shapes]

    def fan_outs(self) -> list[int]:
        """Synapses per spike, with average pooling folded into the next layer's weights: a conv neuron
        reaches a 3×3 neighbourhood of every output channel, a pooled unit every dense neuron."""
        return [9 * self.synapses[1][1].out_channels, self.synapses[2][2].out_features, self.head.out_features]

    def input_fan_out(self) -> int:
        return 9 * self.synapses[0].out_channels


def build_student(cfg: StudentParams, num_classes: int = 10, seed: int = 0) -> nn.Module:
    """The student described by ``cfg`` (:class:`kdlib.core.params.StudentParams`), initialised from ``seed``."""
    torch.manual_seed(seed)
    if cfg.arch == "mlp":
        return SpikingMLP(PIXELS, tuple(cfg.hidden), num_classes, neuron=neuron_parameters(cfg))
    if len(cfg.hidden) != 1:
        raise ValueError(f"student.hidden must have one width for arch 'cnn', got {cfg.hidden}")
    return SpikingCNN(cfg.hidden[0], num_classes, neuron=neuron_parameters(cfg))


def save_student(path: str | Path, student: Student, cfg: Any, variant: Any, dataset: str, num_classes: int,
                 metrics: dict[str, Any], finetuned_teacher: nn.Module | None = None) -> None:
    """Write a student checkpoint (weights, its student and variant parameters, metrics), atomically.

    A teacher fine-tuned with the student (bidirectional KD) is stored with it."""
    save_torch(path, {
        "kind": "student", "dataset": dataset, "num_classes": num_classes, "config": cfg.model_dump(),
        "variant": variant.model_dump(), "metrics": metrics,
        "state_dict": {k: v.cpu() for k, v in student.state_dict().items()},
        "teacher_state_dict": None if finetuned_teacher is None else
        {k: v.cpu() for k, v in finetuned_teacher.state_dict().items()},
    })


def load_student(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a student from :func:`save_student`'s file; returns the model (eval mode) and the checkpoint."""
    return load_model(path, "student", lambda ckpt: build_student(StudentParams(**ckpt["config"]),
                                                                  ckpt["num_classes"]))
