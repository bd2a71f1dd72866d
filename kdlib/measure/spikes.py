"""Spike and operation counts of spiking models, and what they would cost in energy and time.

Every count works on anything that unpacks as ``(outputs, spikes)``: a student's
:class:`~kdlib.snn.students.SpikingOutput`, a converted network's output, a plain tuple. ``outputs`` is
(T, B, classes), ``spikes`` one 0/1 tensor (T, B, *layer_shape) per spiking layer. Counts are per
image: summed over time and neurons, averaged over the images seen.

Counting
    :func:`spike_totals` / :func:`spikes_per_image` count spikes by layer (with ``x.sum()``: the
    common ``torch.sum(torch.nonzero(x))`` sums the spikes' *indices*); :func:`synaptic_ops`,
    :func:`neuron_updates`, :func:`dense_macs` and :func:`linear_macs` count operations;
    :class:`SpikeCounter` does all of it over a split fed chunk by chunk.
Costs
    The published per-operation figures live here and nowhere else: :data:`HOROWITZ_2014` (45 nm CMOS)
    and :data:`DAVIES_2018` (Loihi, pre-silicon). :func:`ann_energy_nj`, :func:`snn_energy_nj` and
    :func:`loihi_estimate` turn counts into nanojoules (and microseconds) per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from kdlib.snn.students import SpikingOutput, Student



# --------------------------------------------------------------------------- published per-operation costs
@dataclass(frozen=True)
class CmosCosts:
    """Energy of 32-bit floating-point arithmetic in 45 nm CMOS: M. Horowitz, "Computing's energy problem
    (and what we can do about it)", ISSCC 2014. A dense layer pays one multiply-accumulate per weight; a
    synaptic operation driven by a binary spike needs only the addition."""

    mac_pj: float = 4.6  # one multiply-accumulate: multiply 3.7 pJ + add 0.9 pJ
    add_pj: float = 0.9  # one addition (accumulate)


@dataclass(frozen=True)
class LoihiCosts:
    """Energy and time of Loihi's operations: M. Davies et al., "Loihi: A Neuromorphic Manycore Processor
    with On-Chip Learning", IEEE Micro 38(1), 2018, Table 2. These are pre-silicon figures; no
    per-operation table has been published for Loihi 2."""

    synop_pj: float = 23.6  # one synaptic spike operation
    synop_ns: float = 3.5
    update_active_pj: float = 81.0  # one neuron update, active
    update_active_ns: float = 8.4
    update_inactive_pj: float = 52.0  # one neuron update, inactive
    update_inactive_ns: float = 5.3
    spike_pj: float = 1.7  # one spike sent within a tile


HOROWITZ_2014 = CmosCosts()
DAVIES_2018 = LoihiCosts()


# ------------------------------------------------------------------------------------------------ counting
def check_binary(x: Tensor, name: str = "spikes") -> None:
    """Raise ``ValueError`` unless every element of ``x`` is 0 or 1."""
    if x.dtype != torch.bool and x.ne(0).logical_and_(x.ne(1)).any():
        raise ValueError(f"{name} must be 0/1 tensors; found other values (is this a membrane potential?)")


def spike_totals(spikes: Sequence[Tensor], check: bool = True) -> Tensor:
    """Spikes of each layer summed over time, batch and neurons: a float64 tensor (layers,)."""
    for i, s in enumerate(spikes):
        if check:
            check_binary(s, f"spikes of layer {i}")
    if not spikes:
        return torch.zeros(0, dtype=torch.float64)
    return torch.stack([s.sum(dtype=torch.float64).cpu() for s in spikes])


def spikes_per_image(spikes: Sequence[Tensor], check: bool = True) -> list[float]:
    """Spikes per image of each layer: summed over time and neurons, averaged over the batch (dim 1)."""
    return (spike_totals(spikes, check) / spikes[0].shape[1]).tolist() if spikes else []


def synaptic_ops(layer_spikes: Sequence[float], fan_outs: Sequence[int], input_spikes: float = 0.0,
                 input_fan_out: int = 0) -> float:
    """Synaptic operations: every spike times the synapses it drives (``fan_outs``, one per spiking layer),
    plus, when the input is itself spikes (rate coding), input spikes times the first layer's fan-out."""
    if len(layer_spikes) != len(fan_outs):
        raise ValueError(f"{len(layer_spikes)} spiking layers but {len(fan_outs)} fan-outs")
    return float(sum(s * f for s, f in zip(layer_spikes, fan_outs, strict=True)) + input_spikes * input_fan_out)


def neuron_updates(widths: Sequence[int], steps: int) -> int:
    """Neuron state updates: every neuron of every layer, once per time step."""
    return sum(widths) * steps


def dense_macs(in_features: int, out_features: int, steps: int = 1) -> int:
    """Multiply-accumulates of a dense layer applied ``steps`` times (a real-valued, directly encoded input
    fed to the first layer at every step)."""
    return in_features * out_features * steps


def linear_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one forward pass of an MLP: the weights of all its ``nn.Linear`` layers."""
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


# --------------------------------------------------------------------------------------------------- costs
def ann_energy_nj(macs: float, costs: CmosCosts = HOROWITZ_2014) -> float:
    """45 nm energy of an ANN: one MAC per weight."""
    return macs * costs.mac_pj / 1e3


def snn_energy_nj(synops: float, input_macs: float = 0.0, costs: CmosCosts = HOROWITZ_2014) -> float:
    """45 nm energy of an SNN: one addition per synaptic operation, plus MACs for a layer with real input."""
    return (synops * costs.add_pj + input_macs * costs.mac_pj) / 1e3


class LoihiEstimate(NamedTuple):
    """Energy (nJ) and time (µs) of one image on Loihi, by kind of operation."""

    synops_nj: float
    neurons_nj: float
    spikes_nj: float
    latency_us: float

    @property
    def total_nj(self) -> float:
        return self.synops_nj + self.neurons_nj + self.spikes_nj


def loihi_estimate(synops: float, neuron_updates: float, spikes: float,
                   costs: LoihiCosts = DAVIES_2018) -> LoihiEstimate:
    """Loihi's energy and latency for one image, from its counted operations (pre-silicon figures).

    ``spikes`` are those the chip's neurons send; an update is *active* when its neuron fires at that step
    and *inactive* otherwise, so active updates = spikes. Input spikes come from outside the chip and
    cost their synaptic operations only.

    Latency is an **upper bound**: every operation timed one after the other, as if the whole network ran
    on one core. Loihi's cores work in parallel between time-step barriers, but how a network is spread
    over cores (and so the busiest core's share of each step) depends on a mapping this estimate does not
    know; spike transport time is not in the figures used and is left out.
    """
    inactive = neuron_updates - spikes
    neurons_pj = spikes * costs.update_active_pj + inactive * costs.update_inactive_pj
    time_ns = synops * costs.synop_ns + spikes * costs.update_active_ns + inactive * costs.update_inactive_ns
    return LoihiEstimate(synops * costs.synop_pj / 1e3, neurons_pj / 1e3, spikes * costs.spike_pj / 1e3,
                         time_ns / 1e3)


# ------------------------------------------------------------------------------------------ the accumulator
class SpikeCounter:
    """Spikes and operations of a spiking model over a split, accumulated chunk by chunk.

    ``fan_outs``: synapses driven by one spike of each spiking layer; ``input_fan_out``: those driven by
    one input spike (rate coding: pass the input to :meth:`update`); ``input_macs_per_step``: the MACs of
    a first layer fed real values (direct encoding), paid at every step.
    """

    def __init__(self, fan_outs: Sequence[int], *, input_fan_out: int = 0, input_macs_per_step: int | None = 0,
                 names: Sequence[str] | None = None, check: bool = True) -> None:
        self.fan_outs = list(fan_outs)
        self.names = list(names) if names is not None else [f"layer{i}" for i in range(len(self.fan_outs))]
        if len(self.names) != len(self.fan_outs):
            raise ValueError(f"{len(self.names)} names for {len(self.fan_outs)} layers")
        self.input_fan_out, self.input_macs_per_step, self.check = input_fan_out, input_macs_per_step, check
        self.images, self.steps, self.input_spikes = 0, 0, 0.0
        self.widths: list[int] = []
        self._neuron_counts: list[Tensor] = []  # spikes of every neuron, summed over time and images
        self._per_image: list[Tensor] = []  # (B, layers) per chunk

    @classmethod
    def for_model(cls, model: Student, encoding: str = "direct", *, input_macs_per_step: int | None = None,
                  names: Sequence[str] | None = None, check: bool = True) -> SpikeCounter:
        """A counter for a model with ``fan_outs()`` and ``input_fan_out()`` (the students, the converted MLP).

        With direct encoding, the first layer's MACs per step are those of ``model.synapses[0]`` when it is an
        ``nn.Linear``; pass ``input_macs_per_step`` for any other first layer, or they stay unknown (and
        :meth:`input_macs_per_image` says so)."""
        if encoding == "rate":
            return cls(model.fan_outs(), input_fan_out=model.input_fan_out(), names=names, check=check)
        if input_macs_per_step is None:
            first = model.synapses[0]
            if isinstance(first, nn.Linear):
                input_macs_per_step = first.in_features * first.out_features
        return cls(model.fan_outs(), input_macs_per_step=input_macs_per_step, names=names, check=check)

    @torch.no_grad()
    def update(self, out: SpikingOutput, input_spikes: Tensor | None = None) -> None:
        """Add one chunk: a model's ``(outputs, spikes)`` and, for spiking input, the input sequence."""
        outputs, spikes = out
        steps, batch = outputs.shape[:2]
        if len(spikes) != len(self.fan_outs):
            raise ValueError(f"{len(spikes)} spiking layers but {len(self.fan_outs)} fan-outs")
        if self.steps and steps != self.steps:
            raise ValueError(f"every chunk must have the same number of steps ({self.steps}), got {steps}")
        if not self._neuron_counts:
            self.steps, self.widths = steps, [s[0, 0].numel() for s in spikes]
            self._neuron_counts = [torch.zeros(s.shape[2:], dtype=torch.float64) for s in spikes]
        per_image = []
        for i, s in enumerate(spikes):
            if self.check:
                check_binary(s, f"spikes of layer {self.names[i]}")
            self._neuron_counts[i] += s.sum((0, 1), dtype=torch.float64).cpu()
            per_image.append(s.sum(0).flatten(1).sum(1, dtype=torch.float64).cpu())
        self._per_image.append(torch.stack(per_image, 1) if per_image else torch.zeros(batch, 0))
        if input_spikes is not None:
            if self.check:
                check_binary(input_spikes, "input spikes")
            self.input_spikes += input_spikes.sum(dtype=torch.float64).item()
        self.images += batch

    def _need_data(self) -> None:
        if not self.images:
            raise ValueError("no chunk counted yet: call update() first")

    def spikes_per_image(self) -> dict[str, float]:
        """Spikes per image by layer, and their ``total``."""
        self._need_data()
        per_layer = [float(c.sum()) / self.images for c in self._neuron_counts]
        return dict(zip(self.names, per_layer, strict=True)) | {"total": sum(per_layer)}

    def synops_per_image(self) -> float:
        """Synaptic operations per image (input spikes included when they were given)."""
        per_layer = list(self.spikes_per_image().values())[:-1]
        return synaptic_ops(per_layer, self.fan_outs, self.input_spikes / self.images, self.input_fan_out)

    def neuron_updates_per_image(self) -> int:
        """Updates of the spiking layers' neurons per image."""
        self._need_data()
        return neuron_updates(self.widths, self.steps)

    def input_macs_per_image(self) -> int:
        """MACs per image of a first layer that takes real values."""
        self._need_data()
        if self.input_macs_per_step is None:
            raise ValueError("the first layer is not an nn.Linear and its MACs per step were not given: "
                             "build the counter with input_macs_per_step")
        return self.input_macs_per_step * self.steps

    def firing_rates(self) -> pd.DataFrame:
        """Every neuron's firing rate (spikes per step, averaged over images): columns layer, neuron, rate."""
        self._need_data()
        frames = [pd.DataFrame({"layer": name, "neuron": range(c.numel()),
                                "rate": (c.flatten() / (self.images * self.steps)).numpy()})
                  for name, c in zip(self.names, self._neuron_counts, strict=True)]
        return pd.concat(frames, ignore_index=True)

    def per_image(self) -> pd.DataFrame:
        """Spikes of every image by layer and in total (one row per image, in the order seen)."""
        self._need_data()
        frame = pd.DataFrame(torch.cat(self._per_image).numpy(), columns=self.names)
        frame["total"] = frame.sum(axis=1)
        return frame

    def summary(self, cmos: CmosCosts = HOROWITZ_2014, loihi: LoihiCosts = DAVIES_2018) -> dict[str, float]:
        """Counts per image and the energy estimates: spikes by layer and in total, mean firing rate,
        synaptic operations, neuron updates, input MACs, 45 nm energy, Loihi energy and latency bound.

        The Loihi figures count spiking work only: a first layer fed real values (direct encoding) has no
        counterpart among Loihi's operations and is left out of them."""
        spikes = self.spikes_per_image()
        synops, updates, macs = self.synops_per_image(), self.neuron_updates_per_image(), self.input_macs_per_image()
        chip = loihi_estimate(synops, updates, spikes["total"], loihi)
        return {
            **{f"spikes_{k}": v for k, v in spikes.items()},
            "firing_rate": spikes["total"] / updates if updates else 0.0,
            "synops": synops, "neuron_updates": float(updates), "input_macs": float(macs),
            "energy_45nm_nj": snn_energy_nj(synops, macs, cmos),
            "energy_loihi_nj": chip.total_nj, "latency_loihi_us": chip.latency_us,
        }
