"""ANN→SNN conversion: the baseline the distilled students are compared with.

The teacher MLP's ReLU units become integrate-and-fire neurons with reset by subtraction, whose firing
rates approximate the (normalised) ReLU activations. Weights are rescaled layer by layer with data-based
normalisation (P. U. Diehl et al., "Fast-classifying, high-accuracy spiking deep networks through weight
and threshold balancing", IJCNN 2015), using the robust percentile of B. Rueckauer et al., "Conversion of
Continuous-Valued Deep Networks to Efficient Event-Driven Networks for Image Classification", Frontiers in
Neuroscience 2017, instead of the maximum:

    λ_l = the p-th percentile of layer l's positive activations on calibration images (λ_0 = 1: pixels ≤ 1)
    W_l ← W_l · λ_{l−1} / λ_l,   b_l ← b_l / λ_l,   threshold 1

so that a unit at its layer's λ fires at about one spike per step. Biases are constant input currents.
The input is direct: the image is a constant current at every step. The readout is not spiking: at
every step it adds the head's input current (W_head · λ_L applied to the last layer's spikes, plus the
bias), so the logits, the mean over steps, approach the teacher's. Dropout plays no part at inference.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from kdlib.snn.students import DenseLayers, SpikingOutput, over_time
from kdlib.snn.teachers import MLPTeacher


def integrate_and_fire(current: Tensor, threshold: float = 1.0) -> Tensor:
    """Non-leaky integrate-and-fire over a current sequence (T, B, ...): v ← v + I_t, spike when
    v ≥ threshold, then v ← v − threshold (reset by subtraction keeps the surplus). Starts at v = 0."""
    v = torch.zeros_like(current[0])
    spikes = torch.empty(current.shape, dtype=current.dtype, device=current.device)
    for t in range(current.shape[0]):
        v += current[t]
        spikes[t] = v >= threshold
        v.sub_(spikes[t], alpha=threshold)
    return spikes


class ConvertedMLP(DenseLayers, nn.Module):
    """An MLP of integrate-and-fire neurons (reset by subtraction) with a non-spiking, accumulating readout.

    Built by :func:`convert_mlp`; ``scales`` holds the normalisation factors λ_1..λ_L it used. Follows the
    student interface: ``forward(x_seq)`` with x_seq (T, B, *input_shape) returns (outputs, spikes).
    """

    def __init__(self, synapses: Sequence[nn.Linear], head: nn.Linear, scales: Sequence[float],
                 threshold: float = 1.0) -> None:
        super().__init__()
        self.synapses = nn.ModuleList(synapses)
        self.head = head
        self.scales = list(scales)
        self.threshold = threshold

    def forward(self, x_seq: Tensor) -> SpikingOutput:
        h, spikes = x_seq.flatten(2), []  # flattening keeps a constant (expanded) sequence constant
        for synapse in self.synapses:
            h = integrate_and_fire(over_time(synapse, h), self.threshold)
            spikes.append(h)
        return SpikingOutput(over_time(self.head, h), spikes)


def activation_percentiles(teacher: MLPTeacher, images: Tensor, percentile: float = 99.9,
                           chunk_size: int = 1000) -> list[float]:
    """The ``percentile`` of every hidden layer's positive ReLU activations on ``images`` (one value per layer).

    Zeros are left out, as they would drag the percentile of a sparse layer down. The teacher runs in
    evaluation mode (no dropout) and is put back in the mode it was in."""
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    was_training = teacher.training
    teacher.eval()
    device = next(teacher.parameters()).device
    positive: list[list[Tensor]] = [[] for _ in teacher.hidden]
    for start in range(0, len(images), chunk_size):
        for acc, h in zip(positive, teacher(images[start:start + chunk_size].to(device)).features, strict=True):
            acc.append(h[h > 0].cpu())
    teacher.train(was_training)
    scales = []
    for acc in positive:
        values = torch.cat(acc).double().numpy()
        scales.append(float(np.percentile(values, percentile)) if values.size else 1.0)
    return scales


@torch.no_grad()
def convert_mlp(teacher: MLPTeacher, calibration: Tensor, percentile: float = 99.9, threshold: float = 1.0,
                chunk_size: int = 1000) -> ConvertedMLP:
    """Convert a trained MLP teacher with data-based normalisation on ``calibration`` images (e.g. a few
    thousand training images); the teacher is left unchanged."""
    scales = activation_percentiles(teacher, calibration, percentile, chunk_size)
    synapses, previous = [], 1.0
    for layer, scale in zip(teacher.hidden, scales, strict=True):
        synapse = copy.deepcopy(layer)
        synapse.weight.mul_(previous / scale)
        synapse.bias.div_(scale)
        synapses.append(synapse)
        previous = scale
    head = copy.deepcopy(teacher.head)
    head.weight.mul_(previous)
    return ConvertedMLP(synapses, head, scales, threshold).eval()
