"""Spike and operation counts of spiking models.

Every count works on anything that unpacks as ``(outputs, spikes)``: a student's
:class:`~kdlib.snn.students.SpikingOutput`, a converted network's output, a plain tuple. ``outputs`` is
(T, B, classes), ``spikes`` one 0/1 tensor (T, B, *layer_shape) per spiking layer. Counts are per
image: summed over time and neurons, averaged over the images seen.

Counting
    :func:`spike_totals` / :func:`spikes_per_image` count spikes by layer (with ``x.sum()``: the
    common ``torch.sum(torch.nonzero(x))`` sums the spikes' *indices*); :func:`synaptic_ops`,
    :func:`neuron_updates` and :func:`linear_macs` count operations; :class:`SpikeCounter` does all of it over
    a split fed chunk by chunk.

What the counts cost in energy and time is :mod:`kdlib.measure.energy`'s, the one home of the per-operation figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from kdlib.snn.students import SpikingOutput, Student



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


def linear_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one forward pass of an MLP: the weights of all its ``nn.Linear`` layers."""
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


# ------------------------------------------------------------------------------------------ the accumulator
class SpikeCounter:
    """Spikes and operations of a spiking model over a split, accumulated chunk by chunk.

    ``fan_outs``: synapses driven by one spike of each spiking layer, an int or a tensor that broadcasts
    against the layer's shape (a convolution's reach differs from position to position: the count is then
    exact, neuron by neuron); ``input_fan_out``: those driven by one input spike (rate coding: pass the
    input to :meth:`update`); ``input_macs_per_step``: the MACs of a first layer fed real values (direct
    encoding), paid at every step.
    """

    def __init__(self, fan_outs: Sequence[int | Tensor], *, input_fan_out: int = 0, input_macs_per_step: int | None = 0,
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
            elif hasattr(model, "input_macs"):
                input_macs_per_step = model.input_macs()
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

    def hidden_synops_per_image(self) -> float:
        """Synaptic operations per image driven by the spiking layers' spikes: every neuron's spikes times
        the synapses it drives."""
        self._need_data()
        return sum(float(c.sum()) / self.images * fan if isinstance(fan, int) else float((c * fan).sum()) / self.images
                   for c, fan in zip(self._neuron_counts, self.fan_outs, strict=True))

    def synops_per_image(self) -> float:
        """Synaptic operations per image (input spikes included when they were given)."""
        return self.hidden_synops_per_image() + self.input_spikes / self.images * self.input_fan_out

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
