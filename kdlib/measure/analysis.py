"""Evaluating trained spiking models: accuracy, spikes and operations, accuracy against time steps, early exit,
robustness to noise.

Evaluation
    :func:`evaluate` is the one way a student is run over a split: its accuracy, its logits, its spikes and
    synaptic operations (a :class:`kdlib.measure.spikes.SpikeCounter`) and, if asked, the outputs of every step.
    The distillation stage's metrics and the spike analysis both come from it.

Accuracy against T
    A feed-forward spiking network is causal: its outputs up to step t do not depend on later input.
    So one run at the largest T gives the accuracy at every smaller T from the mean of the first t
    outputs (:func:`accuracy_over_time`), chunk by chunk over a split.
Early exit
    After SEENN-I (Y. Li et al., "SEENN: Towards Temporal Spiking Early-Exit Neural Networks", NeurIPS
    2023): an image stops at the first step at which the softmax confidence of its accumulated output
    reaches a threshold (:func:`early_exit`, :func:`early_exit_sweep`).
Corruptions
    Seeded input corruptions that keep images in [0, 1], with a registry (:data:`CORRUPTIONS`) of names
    and levels for a notebook to loop over.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd
import torch
from torch import Tensor, nn

from kdlib.core.data import Encoding, Split, batches, encode
from kdlib.measure.spikes import SpikeCounter, check_binary

if TYPE_CHECKING:
    from kdlib.snn.students import SpikingOutput, Student


# ------------------------------------------------------------------------------------------------ evaluation
class Evaluation(NamedTuple):
    """What :func:`evaluate` measured on a split."""

    accuracy: float
    logits: Tensor  # (N, classes), on the CPU
    counts: SpikeCounter  # spikes by layer and neuron, synaptic operations, energy (:meth:`SpikeCounter.summary`)
    outputs: Tensor | None  # (T, N, classes) on the CPU with ``keep_outputs``, for :func:`early_exit`


NEURON_STEPS_PER_CHUNK = 1 << 22
"""The most neuron-steps (spiking neurons × steps × images) one evaluated chunk holds: 1,000 images of the
400-400 MLP at T = 4, about 200 of the 16/32 conv student."""


def chunk_size_for(model: Student, steps: int, most: int = 250) -> int:
    """Images per evaluated chunk: ``most``, or fewer where a chunk of ``most`` would hold more than
    :data:`NEURON_STEPS_PER_CHUNK` neuron-steps, so that a chunk's memory is bounded whatever the network."""
    per_image = max(1, sum(model.layer_widths()) * steps)
    return max(1, min(most, NEURON_STEPS_PER_CHUNK // per_image))


@torch.no_grad()
def evaluate(model: Student, split: Split, steps: int, *, encoding: Encoding, seed: int = 0,
             chunk_size: int | None = None, keep_outputs: bool = False, check: bool = True) -> Evaluation:
    """Run ``model`` over ``split`` in chunks of ``chunk_size`` images (by default :func:`chunk_size_for`'s) at
    ``steps`` steps, on the model's device.

    Rate-coded input is drawn from a generator seeded with ``seed`` (the same chunks and seed give the same
    spikes); its spikes are counted as synaptic operations of the first layer. ``check`` verifies that every
    spike tensor is 0/1.
    """
    counter = SpikeCounter.for_model(model, encoding, check=check)
    logits, outputs = [], []
    chunk_size = chunk_size or chunk_size_for(model, steps)
    for out, _, x_seq in _runs(model, split, steps, encoding, chunk_size, seed):
        counter.update(out, input_spikes=x_seq if encoding == "rate" else None)
        logits.append(out.logits.float().cpu())
        if keep_outputs:
            outputs.append(out.outputs.float().cpu())
    all_logits = torch.cat(logits)
    acc = (all_logits.argmax(1) == split.y).sum().item() / len(split)
    return Evaluation(acc, all_logits, counter, torch.cat(outputs, 1) if keep_outputs else None)


# ------------------------------------------------------------------------------------ accuracy against T
def running_mean(outputs: Tensor) -> Tensor:
    """The mean of the first t+1 outputs at every step t: (T, B, C) → (T, B, C)."""
    counts = torch.arange(1, outputs.shape[0] + 1, device=outputs.device, dtype=outputs.dtype)
    return outputs.cumsum(0) / counts.view(-1, *([1] * (outputs.dim() - 1)))


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    return trim


def resident_bytes() -> int:
    """This process's resident memory now (Linux's ``/proc/self/statm``; 0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


TRIM_SLACK = 64 << 20
"""How far resident memory may grow past its level after an evaluation's first chunk before the heap is trimmed."""


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    A conv student's chunk allocates blocks of 10–30 MB; once glibc's dynamic mmap threshold has grown past
    them they come from the heap, whose free pages glibc keeps, so an evaluation's peak memory would creep up
    with the number of chunks (measured: +220 MiB over 50,000 images in chunks of 250). :func:`_runs` trims
    once resident memory has grown :data:`TRIM_SLACK` past its level after the first chunk: a trim hands pages
    back that the next chunk faults in again, which cost nothing measurable on a quiet machine but made
    evaluation up to twice as slow on a loaded one (``benchmarks/eval_memory.py --arch cnn``, ``--trim-cost``)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _runs(model: Student, split: Split, steps: int, encoding: Encoding, chunk_size: int,
          seed: int) -> Iterator[tuple[SpikingOutput, Tensor, Tensor]]:
    """Run ``model`` over ``split`` in chunks at ``steps`` steps; yield its output, the labels and its input.
    Where resident memory has grown :data:`TRIM_SLACK` past its level after the first chunk, the freed memory is
    returned to the system (:func:`release_freed_memory`), so an evaluation's peak memory does not grow with
    the split."""
    device = _model_device(model)
    gen = torch.Generator(device=device).manual_seed(seed) if encoding == "rate" else None
    model.eval()
    level = None
    for b in batches(split, chunk_size):
        x_seq = encode(b.x.to(device), steps, encoding, gen)
        yield model(x_seq), b.y.to(device), x_seq
        now = resident_bytes()
        if level is None:
            level = now
        elif now > level + TRIM_SLACK:
            release_freed_memory()


@torch.no_grad()
def accuracy_over_time(model: Student, split: Split, steps: Sequence[int], *, encoding: Encoding = "direct",
                       chunk_size: int | None = None, seed: int = 0, check: bool = True) -> pd.DataFrame:
    """Accuracy and spikes per image at every T in ``steps``, from one run at the largest T (in chunks of
    ``chunk_size`` images, by default :func:`chunk_size_for`'s).

    The logits at T are the mean of the first T outputs, as a run at T would give. Returns one row per T:
    ``steps``, ``accuracy``, ``spikes_per_image`` (all spiking layers, steps 1..T) and ``spikes_layer<i>``.
    """
    wanted = sorted(set(steps))
    if not wanted or wanted[0] < 1:
        raise ValueError(f"steps must be positive, got {list(steps)}")
    index = torch.tensor(wanted) - 1
    correct = torch.zeros(len(wanted), dtype=torch.float64)
    chunk_size = chunk_size or chunk_size_for(model, wanted[-1])
    spikes: Tensor | None = None  # (layers, len(wanted)): cumulative spikes summed over images
    for (outputs, layer_spikes), y, _ in _runs(model, split, wanted[-1], encoding, chunk_size, seed):
        logits = running_mean(outputs)[index.to(outputs.device)]
        correct += (logits.argmax(-1) == y).sum(1, dtype=torch.float64).cpu()
        if check:
            for s in layer_spikes:
                check_binary(s)
        per_step = torch.stack([s.flatten(2).sum((1, 2), dtype=torch.float64).cpu() for s in layer_spikes])
        chunk = per_step.cumsum(1)[:, index] if len(layer_spikes) else torch.zeros(0, len(wanted))
        spikes = chunk if spikes is None else spikes + chunk
    n = len(split)
    frame = pd.DataFrame({"steps": wanted, "accuracy": (correct / n).numpy()})
    frame["spikes_per_image"] = (spikes.sum(0) / n).numpy()
    for i, layer in enumerate(spikes):
        frame[f"spikes_layer{i}"] = (layer / n).numpy()
    return frame


# ------------------------------------------------------------------------------------------------ early exit
def early_exit(outputs: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """SEENN-I: per image, the number of steps used and the prediction made.

    ``outputs`` (T, B, C). An image exits at the first step t whose accumulated output (the mean of steps
    1..t) has a maximum softmax probability ≥ ``threshold``, and at T if none has. Returns the exit steps
    (B,) in 1..T and the predicted classes (B,).
    """
    confidence, predictions = running_mean(outputs).softmax(-1).max(-1)  # (T, B) each
    passed = confidence >= threshold
    first = (passed.cumsum(0) == 0).sum(0).clamp(max=outputs.shape[0] - 1)  # steps before the first pass
    return first + 1, predictions.gather(0, first.unsqueeze(0)).squeeze(0)


def early_exit_sweep(outputs: Tensor, labels: Tensor, thresholds: Sequence[float]) -> pd.DataFrame:
    """Accuracy against the mean number of steps: one row per threshold (threshold, accuracy, mean_steps)."""
    labels = labels.to(outputs.device)
    rows = []
    for threshold in thresholds:
        exit_steps, predictions = early_exit(outputs, threshold)
        rows.append({"threshold": threshold, "accuracy": (predictions == labels).float().mean().item(),
                     "mean_steps": exit_steps.float().mean().item()})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- corruptions
def gaussian_noise(x: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """Add zero-mean Gaussian noise of standard deviation ``sigma`` to every pixel; clamp to [0, 1]."""
    if sigma == 0:
        return x.clone()
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + sigma * noise).clamp_(0.0, 1.0)


def salt_and_pepper(x: Tensor, rate: float, generator: torch.Generator | None = None) -> Tensor:
    """Set a fraction ``rate`` of the pixels at random: half of them to 0 (pepper), half to 1 (salt)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    u = torch.rand(x.shape, generator=generator, device=x.device)
    out = x.clamp(0.0, 1.0)
    out[u < rate / 2] = 0.0
    out[(u >= rate / 2) & (u < rate)] = 1.0
    return out


@dataclass(frozen=True)
class Corruption:
    """A named corruption, the name of its strength parameter and the levels a study sweeps."""

    label: str
    parameter: str
    levels: tuple[float, ...]
    apply: Callable[[Tensor, float, torch.Generator | None], Tensor]

    def __call__(self, x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
        return self.apply(x, level, generator)


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian": Corruption("Gaussian noise", "sigma", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), gaussian_noise),
    "salt_and_pepper": Corruption("salt-and-pepper noise", "rate", (0.0, 0.05, 0.1, 0.2, 0.3), salt_and_pepper),
}


def corrupt_split(split: Split, name: str, level: float, seed: int = 0) -> Split:
    """A copy of ``split`` with its images corrupted by ``CORRUPTIONS[name]`` at ``level`` (seeded)."""
    if name not in CORRUPTIONS:
        raise KeyError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
    gen = torch.Generator(device=split.x.device).manual_seed(seed)
    return Split(CORRUPTIONS[name](split.x, level, gen), split.y)


def pareto_front(frame: pd.DataFrame, cost: str, score: str) -> pd.Series:
    """True for the rows that no other row beats on both columns (lower ``cost``, higher ``score``)."""
    ordered = frame.sort_values([cost, score], ascending=[True, False])
    best, keep = float("-inf"), []
    for value in ordered[score]:
        keep.append(value > best)
        best = max(best, value)
    return pd.Series(keep, index=ordered.index).reindex(frame.index)
