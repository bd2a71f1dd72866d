"""The students of stage 2 in Loihi's fixed-point arithmetic: the integer network, its PyTorch model, its netx file.

A stage-2 LIF student (:class:`kdlib.snn.students.SpikingMLP` of :class:`~kdlib.snn.students.LIFParameters`) computes
in every hidden layer v' = (1 − 1/τ)·v + (1/τ)·(W·x + b), spikes where v' > θ and resets v' to zero, and
reads out its head's W·h + b averaged over the T steps. Loihi's current-based LIF neuron (CUBA) with a
current decay of 1 (the synaptic current lasts one step) and a voltage decay of 1/τ is the same neuron in
integers. In the arithmetic of Lava's bit-accurate models (``PyDenseModelBitAcc``, ``PyLifModelBitAcc``),
for one step of a layer:

    a  = Σ w·s                          8-bit weight mantissas w (even, −256 … 254) times the input messages s
    u  = wrap₂₄(a << 6)                 the current (24 bits: it wraps around)
    v' = clip₂₄(trunc(v·(4096 − dv) / 4096) + u + (bias << 6))
    spike where v' > θ << 6, then v' = 0

:func:`convert` chooses one scale s per layer (integer units per unit of the float pre-activation), so
that w = s·W/τ (in the first layer per intensity level of the input messages), bias = s·b/τ and
θ = s·θ_float, as large as the weight mantissa, the 13-bit bias and the 17-bit threshold allow and as the
24-bit current allows on calibration images (:class:`LayerScale` says which limit bound it). The readout
is a layer of CUBA neurons that do not fire (θ at its maximum, no voltage decay, w = s·W, bias = s·b): its
voltage at the last step is 64·Σₜ (W·hₜ + b) in integers, T times the logits (clipped to 24 bits, and it
fires, resetting to 0, only above θ), and its arg-max is the prediction. Images that drive a neuron
harder than any calibration image can still wrap a current; the PyTorch model wraps it as Lava does.

The input is the image as **graded spikes** (Loihi 2's ``input_message_bits``): every step, each pixel
with a non-zero value sends its intensity, rounded to ``input_bits`` bits, the direct encoding the
students were trained with. :func:`payload` makes those messages and :func:`run` is the PyTorch model
that computes what Lava computes, bit for bit; :func:`export_netx` writes the network for
``lava.lib.dl.netx`` and :func:`kdlib.loihi.deploy.run_lava` runs it.

A student the chip has no neuron model for (straight-through binary neurons, a reset by subtraction, a
convolution) raises :class:`NotDeployable`, whose message names what does not fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from kdlib.core.io import atomic_path
from kdlib.snn.students import LIFParameters, SpikingMLP

WEIGHT_MIN, WEIGHT_MAX = -256, 254   # an 8-bit signed mantissa on SLAYER's grid (even integers)
BIAS_MAX = 4095                      # 13-bit signed bias mantissa (netx applies bias_exp = 6)
THRESHOLD_MAX = 131071               # 17-bit threshold mantissa (vThMant)
STATE_LIMIT = 2 ** 23                # current and voltage are 24-bit: u wraps at ±2²³, v clips at ±(2²³ − 1)
CURRENT_LIMIT = STATE_LIMIT >> 6     # |a| at which the current u = a << 6 would wrap
DECAY_UNITY = 4096                   # decays are 12-bit fractions
SHIFT = 6                            # a, bias and θ are shifted left by 6 bits into the state's units
HEADROOMS = (2.0, 1.0)               # the largest calibration current may use half, or all, of the 24-bit range

Limit = Literal["weights", "bias", "threshold", "current", "readout"]


class NotDeployable(ValueError):
    """A student that cannot be mapped to Loihi; the message names what does not fit."""


@dataclass(frozen=True)
class LoihiLayer:
    """One dense layer of CUBA neurons in Loihi's integers (netx's units)."""

    weight: np.ndarray      # (out, in) int64, even, in [WEIGHT_MIN, WEIGHT_MAX]
    bias: np.ndarray        # (out,) int64 bias mantissas
    threshold: int          # vThMant
    current_decay: int      # du of Lava's model (4095: the current lasts one step)
    voltage_decay: int      # dv (0: no leak)
    scale: float            # integer units per unit of the float pre-activation
    limit: Limit            # what bounded the scale


@dataclass(frozen=True)
class LoihiNetwork:
    """A student in Loihi's integers: hidden CUBA layers, then a readout layer that integrates and never fires."""

    layers: tuple[LoihiLayer, ...]
    steps: int
    input_bits: int          # graded input messages: pixel intensities rounded to this many bits
    headroom: float          # the largest calibration current × headroom fits the 24-bit current

    def layer_widths(self) -> list[int]:
        """Neurons per layer, the readout included."""
        return [layer.weight.shape[0] for layer in self.layers]

    def fan_outs(self) -> list[int]:
        """Synapses driven by one spike of each layer; the readout drives none."""
        return [*self.layer_widths()[1:], 0]

    def input_fan_out(self) -> int:
        return self.layers[0].weight.shape[0]


class LayerScale(NamedTuple):
    """How one layer's scale was chosen: the value and the limit that bound it."""

    scale: float
    limit: Limit


def lif_parameters(student: nn.Module, name: str) -> LIFParameters:
    """The LIF parameters of a student the chip can run, or :class:`NotDeployable` naming what does not fit."""
    if not isinstance(student, SpikingMLP):
        raise NotDeployable(f"{name}: a {type(student).__name__}; only fully connected students "
                            "(SpikingMLP) map onto netx's dense CUBA layers")
    kinds = {type(n.params).__name__ for n in student.neurons}
    if kinds != {"LIFParameters"}:
        raise NotDeployable(f"{name}: {', '.join(sorted(kinds - {'LIFParameters'}))} neurons (straight-through "
                            "spikes); Loihi's CUBA neuron has no model for a binary straight-through neuron or a "
                            "reset by subtraction")
    models = {n.params for n in student.neurons}
    if len(models) != 1:
        raise NotDeployable(f"{name}: its layers have different LIF parameters ({sorted(models)}); the deployment "
                            "maps one neuron model")
    (lif,) = models
    dv = DECAY_UNITY / lif.tau_mem
    if not 0 <= round(dv) <= DECAY_UNITY - 1:
        raise NotDeployable(f"{name}: tau_mem = {lif.tau_mem} gives a voltage decay of {dv:.1f}/4096, outside "
                            "Loihi's 12 bits (0 to 4095)")
    if lif.v_th <= 0:
        raise NotDeployable(f"{name}: v_th = {lif.v_th}; Loihi's threshold is a positive integer")
    return lif


def _mantissas(w: Tensor, scale: float) -> np.ndarray:
    """Round ``w · scale`` to Loihi's even 8-bit mantissas."""
    return (2 * torch.round(w.double() * scale / 2)).clamp(WEIGHT_MIN, WEIGHT_MAX).long().numpy()


def choose_scale(weight: Tensor, bias: Tensor, threshold: float | None, peak_current: float,
                 worst_current: float, headroom: float = HEADROOMS[0]) -> LayerScale:
    """The largest scale that fits every integer of a layer, from its float values (:func:`convert` then
    checks the rounded integers and shrinks the scale where rounding went over).

    ``weight`` and ``bias`` are per unit of input message; ``threshold`` is None for the readout, whose
    summed voltage ``peak_current`` (the largest |Σₜ(W·h + b)| on calibration images) times ``headroom``
    must stay below the threshold it never reaches. For a hidden layer, ``peak_current`` is the largest
    |W·x| on calibration images and ``worst_current`` the largest |W·x| any input could give: where the
    worst input could wrap the 24-bit current, the calibration images' largest current times ``headroom``
    must not.
    """
    limits: dict[Limit, float] = {"weights": WEIGHT_MAX / max(weight.abs().max().item(), 1e-30)}
    if bias.abs().max().item() > 0:
        limits["bias"] = BIAS_MAX / bias.abs().max().item()
    if threshold is not None:
        limits["threshold"] = THRESHOLD_MAX / threshold
        if worst_current * min(limits.values()) >= CURRENT_LIMIT:
            limits["current"] = (CURRENT_LIMIT - 1) / (headroom * max(peak_current, 1e-30))
    else:
        limits["readout"] = (THRESHOLD_MAX - 1) / (headroom * max(peak_current, 1e-30))
    limit = min(limits, key=limits.__getitem__)
    return LayerScale(limits[limit], limit)


def _worst(weight: np.ndarray | Tensor, top: int) -> float:
    """The largest |a| that any input of messages in [0, top] could give these weights (integers or floats)."""
    w = np.asarray(weight, dtype=np.float64)
    return top * max(float(np.clip(w, 0, None).sum(1).max()), float(-np.clip(w, None, 0).sum(1).max()))


def payload(x: Tensor, bits: int) -> Tensor:
    """The graded input messages of images in [0, 1]: intensities rounded to ``bits`` bits, (B, pixels) int64."""
    return torch.round(x.flatten(1).double() * (2 ** bits - 1)).long()


@torch.no_grad()
def convert(student: nn.Module, calibration: Tensor, *, steps: int, input_bits: int,
            headroom: float = HEADROOMS[0], name: str = "student") -> LoihiNetwork:
    """Map a trained LIF student onto Loihi's integers, with its scales chosen on ``calibration`` images
    (validation images in [0, 1], (B, 1, 28, 28)): see the module's description.

    ``headroom``: how many times the largest calibration current must fit in the 24-bit current (where
    the worst input could wrap it) and the readout's largest sum below its threshold; 1 leaves the first
    layer's weights one more bit when the current bounds its scale, at the risk of a wrapped current (or
    a firing readout) on an image that drives a neuron harder than any calibration image. Every bound is
    checked on the rounded integers."""
    lif = lif_parameters(student, name)
    if not 1 <= input_bits <= 8:
        raise NotDeployable(f"{name}: input_bits = {input_bits}; Loihi 2's graded spikes carry 1 to 8 bits here")
    gain, levels = 1.0 / lif.tau_mem, 2 ** input_bits - 1
    dv = round(DECAY_UNITY / lif.tau_mem)
    student.eval()
    messages = payload(calibration, input_bits).double()  # (B, pixels): the same every step
    h: Tensor = messages / levels                          # what the messages stand for, as the float input
    layers = []
    for i, (synapse, neurons) in enumerate(zip(student.synapses, student.neurons, strict=True)):
        w, b = synapse.weight.double() * gain, synapse.bias.double() * gain
        per_message, top = (w / levels, levels) if i == 0 else (w, 1)
        peak = (messages @ per_message.T).abs().max().item()
        worst = _worst(per_message, top)
        scale, limit = choose_scale(per_message, b, lif.v_th, peak, worst, headroom)

        def fits(s: float, per_message: Tensor = per_message, messages: Tensor = messages, top: int = top) -> bool:
            weight = _mantissas(per_message, s)
            if _worst(weight, top) < CURRENT_LIMIT:
                return True  # no input can wrap the current
            return headroom * (messages @ torch.from_numpy(weight).double().T).abs().max().item() <= CURRENT_LIMIT - 1

        scale = _shrink(scale, fits, name, i)
        layers.append(_layer(per_message, b, scale, max(1, round(lif.v_th * scale)), dv, limit, name, i))
        current = synapse(h.float())
        if current.dim() == 2:  # the constant input current of direct encoding
            current = current.unsqueeze(0).expand(steps, *current.shape)
        h = neurons(current.contiguous())
        messages = h.double()
    w, b = student.head.weight.double(), student.head.bias.double()
    summed = (torch.einsum("tbi,oi->bo", h.double(), w) + steps * b).abs().max().item()
    scale, limit = choose_scale(w, b, None, summed, 0.0, headroom)

    def readout_fits(s: float) -> bool:
        weight, bias = torch.from_numpy(_mantissas(w, s)).double(), torch.round(b * s)
        total = torch.einsum("tbi,oi->bo", h.double(), weight) + steps * bias
        return headroom * total.abs().max().item() <= THRESHOLD_MAX - 1

    scale = _shrink(scale, readout_fits, name, len(layers))
    layers.append(_layer(w, b, scale, THRESHOLD_MAX, 0, limit, name, len(layers)))
    return LoihiNetwork(tuple(layers), steps, input_bits, headroom)


def _shrink(scale: float, fits: Callable[[float], bool], name: str, index: int) -> float:
    """``scale``, or the first of it shrunk by 1 % steps at which the rounded integers fit."""
    for _ in range(200):
        if fits(scale):
            return scale
        scale *= 0.99
    raise NotDeployable(f"{name}: layer {index}'s integers do not fit the 24-bit current at any usable scale")


def _layer(weight: Tensor, bias: Tensor, scale: float, threshold: int, dv: int, limit: Limit, name: str,
           index: int) -> LoihiLayer:
    """The integers of one layer; a layer without a positive weight is refused (netx reads its sign wrongly)."""
    mantissas = _mantissas(weight, scale)
    if mantissas.max() <= 0:
        raise NotDeployable(f"{name}: layer {index} has no positive weight at 8 bits; netx cannot store an "
                            "all-inhibitory layer")
    return LoihiLayer(mantissas, torch.round(bias * scale).long().numpy(), threshold, DECAY_UNITY - 1, dv, scale, limit)


# --------------------------------------------------------------------------------------------- the model
class FixedRun(NamedTuple):
    """What :func:`run` computed for a batch: ``readout`` (B, classes), the readout's voltage at the last
    step (64·Σₜ (W·h + b) in integers); ``layers`` (B, layers) spikes per layer, the readout's included
    (it fires only where Σₜ (W·h + b) passes its threshold, 2¹⁷ − 1); ``peak_current`` the largest |a| of
    any layer and step; ``trains`` the spikes of every layer at every step."""

    readout: np.ndarray
    layers: np.ndarray
    peak_current: int
    trains: list[np.ndarray]  # every layer's spikes, (T, B, neurons) 0/1, as Lava's spike trains are read

    def predictions(self) -> np.ndarray:
        return self.readout.argmax(1)


def _int32(x: Tensor) -> Tensor:
    """Wrap int64 values as Lava's int32 arithmetic does."""
    return torch.remainder(x + 2 ** 31, 2 ** 32) - 2 ** 31


def _step(u: Tensor, v: Tensor, a: Tensor, layer: LoihiLayer, bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of Lava's ``PyLifResetModelBitAcc`` (``PyLifModelBitAcc``'s arithmetic) for a batch, int32
    overflow included: returns (u, v, spikes)."""
    def decay(state: Tensor, d: int) -> Tensor:
        product = state * (DECAY_UNITY - d)
        return torch.sign(product) * torch.bitwise_right_shift(product.abs(), 12)

    u = _int32(decay(u, layer.current_decay + 1) + _int32(torch.bitwise_left_shift(a, SHIFT)))
    u = torch.where(u > STATE_LIMIT, u - 2 * STATE_LIMIT, torch.where(u <= -STATE_LIMIT, u + 2 * STATE_LIMIT, u))
    v = (decay(v, layer.voltage_decay) + u + bias).clamp(-STATE_LIMIT + 1, STATE_LIMIT - 1)
    z = v > (layer.threshold << SHIFT)
    return u, torch.where(z, torch.zeros_like(v), v), z


@torch.no_grad()
def run(net: LoihiNetwork, messages: Tensor) -> FixedRun:
    """Lava's arithmetic in PyTorch on the input messages of :func:`payload` ((B, pixels) graded values,
    the same every step) or on binary input spikes ((T, B, pixels), rate-coded)."""
    seq = messages.unsqueeze(0).expand(net.steps, *messages.shape) if messages.dim() == 2 else messages
    if seq.shape[0] != net.steps:
        raise ValueError(f"{seq.shape[0]} input steps for a network of {net.steps}")
    x = seq.double()
    counts, trains, peak = [], [], 0
    for layer in net.layers:
        # products in float64 are exact: every |a| stays far below 2⁵³
        a = torch.einsum("tbi,oi->tbo", x, torch.from_numpy(layer.weight).double()).round().long()
        peak = max(peak, int(a.abs().max()))
        bias = torch.bitwise_left_shift(torch.from_numpy(layer.bias), SHIFT)
        u = v = torch.zeros_like(a[0])
        spikes = []
        for t in range(net.steps):
            u, v, z = _step(u, v, a[t], layer, bias)
            spikes.append(z)
        x = torch.stack(spikes).double()
        counts.append(x.sum((0, 2)).long())
        trains.append(x.to(torch.uint8).numpy())
    return FixedRun(v.numpy(), torch.stack(counts, 1).numpy(), peak, trains)


# ------------------------------------------------------------------------------------------------ netx
def export_netx(net: LoihiNetwork, path: str | Path) -> Path:
    """Write ``net`` in the HDF5 layout that ``lava.lib.dl.netx`` reads (one ``dense`` group per layer of
    CUBA neurons; netx takes iDecay − 1 as the current decay), atomically."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("input_bits", data=net.input_bits)
        layers = handle.create_group("layer")
        for i, layer in enumerate(net.layers):
            group = layers.create_group(str(i))
            out_features, in_features = layer.weight.shape
            group.create_dataset("type", data=np.array([b"dense"], dtype="S10"))
            group.create_dataset("shape", data=np.array([out_features]))
            group.create_dataset("inFeatures", data=in_features)
            group.create_dataset("outFeatures", data=out_features)
            group.create_dataset("weight", data=layer.weight.astype(np.int32))
            group.create_dataset("bias", data=layer.bias.astype(np.int32))
            neuron = group.create_group("neuron")
            neuron.create_dataset("type", data="CUBA")
            neuron.create_dataset("iDecay", data=layer.current_decay + 1)
            neuron.create_dataset("vDecay", data=layer.voltage_decay)
            neuron.create_dataset("vThMant", data=layer.threshold)
            neuron.create_dataset("refDelay", data=1)
            neuron.create_dataset("gradedSpike", data=False)
    return Path(path)
