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

import math
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

    def fan_outs(self) -> list[int | Tensor]:
        """Synapses driven by one spike of each spiking layer: an int, or a tensor that broadcasts against the
        layer's shape where the count depends on the neuron (a convolution's borders and strides)."""
        ...

    def input_fan_out(self) -> float:
        """Synapses driven by one input element (averaged over the positions where it depends on them)."""
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


class ConvLayer(NamedTuple):
    """One convolutional layer of :class:`SpikingCNN`: output channels, square kernel, stride (padding k // 2)."""

    channels: int
    kernel: int
    stride: int

    def output_size(self, size: int) -> int:
        """Height (or width) of the output map for an input of ``size``."""
        return (size + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1

    def reach(self, size: int) -> Tensor:
        """How many output positions of one channel each input position of a ``size`` × ``size`` map feeds:
        a (size, size) tensor. Borders and strides make it uneven (a 3×3 kernel with stride 2 reaches 1, 2 or
        4 positions, not 9), so synaptic operations count it position by position."""
        pad, out = self.kernel // 2, self.output_size(size)
        starts = torch.arange(out) * self.stride - pad  # the first input row each output row reads
        rows = torch.arange(size).unsqueeze(1)
        per_row = ((rows >= starts) & (rows < starts + self.kernel)).sum(1)
        return per_row.unsqueeze(1) * per_row.unsqueeze(0)


def conv_layers(channels: Sequence[int]) -> list[ConvLayer]:
    """The convolutions of the workbook's conv students for ``channels``: a 5×5 stem with stride 2, then 3×3
    with stride 2 (28 → 14 → 7 → 4 pixels). Strided convolutions replace pooling: Loihi's netx has no pooling
    layer, and on a CPU average pooling cost more than the convolutions it sat between."""
    return [ConvLayer(c, 5 if i == 0 else 3, 2) for i, c in enumerate(channels)]


def threshold_current(neuron: NeuronParameters) -> float:
    """The constant input current that brings a neuron at rest to its threshold in one step (τ·θ for LIF)."""
    return neuron.tau_mem * neuron.v_th if isinstance(neuron, LIFParameters) else neuron.v_th


class SpikingCNN(nn.Module):
    """Convolutional spiking network: [k×k convolution with stride s → batch norm → spiking neurons] per
    :class:`ConvLayer`, flatten, [linear → batch norm → spiking neurons] per dense width, a linear readout.

    Everything it computes at inference folds into integer synapses on Loihi: no pooling (the convolutions
    stride), and each batch norm, a per-channel affine map in evaluation, folds into its convolution's or
    linear layer's weights and bias (:meth:`folded_synapses`). Batch norm runs over time and batch
    together (the T·B samples of a layer's current) and starts with the scale :func:`threshold_current`,
    so that a unit-variance current fires about one neuron in six at the first step: without it, the
    network is silent at initialisation and no gradient reaches its first layers. With direct input the
    first convolution and its batch norm run once per image, not once per step (:func:`over_time`). The
    convolutions keep their maps channels last (PyTorch's oneDNN convolutions, above all their backward
    pass, run several times faster so on a CPU than on channels-first maps of a few channels); the neurons
    work element by element in whatever order the maps are stored.
    """

    def __init__(self, input_shape: Sequence[int], convs: Sequence[ConvLayer], hidden: Sequence[int],
                 num_classes: int, *, neuron: NeuronParameters, backend: Backend = "auto") -> None:
        super().__init__()
        channels, size, _ = input_shape
        self.convs, self.input_shape = list(convs), tuple(input_shape)
        self._sizes, layers = [size], []
        for conv in self.convs:
            layers.append(nn.Sequential(nn.Conv2d(channels, conv.channels, conv.kernel, conv.stride,
                                                  conv.kernel // 2, bias=False), nn.BatchNorm2d(conv.channels)))
            channels, size = conv.channels, conv.output_size(size)
            self._sizes.append(size)
        widths = (channels * size * size, *hidden)
        layers.append(nn.Sequential(nn.Flatten(), nn.Linear(widths[0], widths[1], bias=False),
                                    nn.BatchNorm1d(widths[1])))
        layers += [nn.Sequential(nn.Linear(a, b, bias=False), nn.BatchNorm1d(b))
                   for a, b in zip(widths[1:-1], widths[2:], strict=True)]
        self.synapses = nn.ModuleList(layers)
        self.neurons = nn.ModuleList(SpikingNeurons(neuron, backend) for _ in layers)
        self.head = nn.Linear(widths[-1], num_classes)
        for synapse in self.synapses:
            nn.init.constant_(synapse[-1].weight, threshold_current(neuron))
        self.to(memory_format=torch.channels_last)

    def forward(self, x_seq: Tensor) -> SpikingOutput:
        h, spikes = x_seq, []
        for synapse, neurons in zip(self.synapses, self.neurons, strict=True):
            h = neurons(over_time(synapse, h))
            spikes.append(h)
        return SpikingOutput(over_time(self.head, h), spikes)

    def layer_shapes(self) -> list[tuple[int, ...]]:
        """The shape of every spiking layer: (C, H, W) for the convolutions, (n,) for the dense layers."""
        convs = [(c.channels, s, s) for c, s in zip(self.convs, self._sizes[1:], strict=True)]
        return [*convs, *((s[-1].num_features,) for s in self.synapses[len(self.convs):])]

    def layer_widths(self) -> list[int]:
        return [math.prod(shape) for shape in self.layer_shapes()]

    def fan_outs(self) -> list[Tensor | int]:
        """Synapses driven by one spike of each spiking layer, exactly: for a layer that feeds a convolution,
        a (1, H, W) map (the next layer's channels times the positions the spike reaches); else an int."""
        shapes, fans = self.layer_shapes(), []
        for i, shape in enumerate(shapes):
            if i + 1 < len(self.convs):
                nxt = self.convs[i + 1]
                fans.append(nxt.channels * nxt.reach(shape[-1]).unsqueeze(0))
            else:
                fans.append(shapes[i + 1][0] if i + 1 < len(shapes) else self.head.out_features)
        return fans

    def input_fan_out(self) -> float:
        """Synapses driven by one input value, averaged over the image's positions (the first convolution's
        MACs per image divided by its pixels)."""
        first, size = self.convs[0], self._sizes[0]
        return first.channels * float(first.reach(size).double().mean())

    def input_macs(self) -> int:
        """MACs of the first convolution for one image at one step (the taps that fall inside the image)."""
        first, size = self.convs[0], self._sizes[0]
        return self.input_shape[0] * first.channels * int(first.reach(size).sum())

    def folded_synapses(self) -> list[tuple[Tensor, Tensor]]:
        """(weight, bias) of every synapse with its batch norm folded in, as evaluation computes it:
        W' = a·W and b' = β − a·μ per output channel, a = γ / √(σ² + ε). Loihi's integer weights start here."""
        folded = []
        for synapse in self.synapses:
            layer, norm = synapse[-2], synapse[-1]
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            weight = layer.weight * scale.view(-1, *([1] * (layer.weight.dim() - 1)))
            folded.append((weight.detach().clone(), (norm.bias - scale * norm.running_mean).detach().clone()))
        return folded


def build_student(cfg: StudentParams, num_classes: int = 10, seed: int = 0) -> nn.Module:
    """The student described by ``cfg`` (:class:`kdlib.core.params.StudentParams`), initialised from ``seed``."""
    torch.manual_seed(seed)
    if cfg.arch == "mlp":
        return SpikingMLP(PIXELS, tuple(cfg.hidden), num_classes, neuron=neuron_parameters(cfg))
    return SpikingCNN((1, 28, 28), conv_layers(cfg.channels), cfg.hidden, num_classes, neuron=neuron_parameters(cfg))


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
