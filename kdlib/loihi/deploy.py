"""Deployment in Lava: a netx network run in Lava's bit-accurate Loihi simulation, image by image, beside PyTorch.

The Lava run
    :func:`run_lava` runs a netx HDF5 file (:meth:`kdlib.loihi.slayer.LoihiMLP.export_hdf5`,
    :func:`kdlib.loihi.fixed_point.export_netx`) in Lava's
    bit-accurate Loihi simulation over a whole test set streamed image after image, and reads each layer's
    spike count per image from Lava itself. :func:`run_torch` counts the same on the PyTorch model,
    :func:`compare` puts the two side by side, image by image; :func:`lava_spike_trains` records every
    spike of a few images. :func:`check_netx` refuses, up front and naming the layer, a netx file that the
    runner cannot run (an Input block, a convolution, image-shaped layers).
The students of stage 2
    :func:`to_loihi` maps a trained student onto Loihi's integers (:mod:`kdlib.loihi.fixed_point`), choosing the
    resolution of its graded input on validation; :func:`selected_seed` picks the seed whose student model
    selection deploys; :func:`message_chunks` streams the graded input into :func:`run_lava`, whose
    ``readout`` option reads the integrating readout layer's voltage, and :func:`compare_readout` sets it
    beside the PyTorch fixed-point model image by image. The stage's decisions, tables and metrics built on
    these are :mod:`kdlib.loihi.study`.
The costs
    :meth:`ImageSpikes.synops` and :meth:`ImageSpikes.neuron_updates` give the operations of each image;
    :func:`kdlib.measure.energy.loihi_estimate` (Davies et al.'s per-operation figures, kept in
    :mod:`kdlib.measure.energy` with the 45 nm ones) turns them into energy and time.

Importing this module installs :func:`kdlib.loihi.lava_compat.install`, so a notebook's own Lava imports work after
it; Lava itself is imported only inside the functions that need it.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from kdlib.core.data import Split, encode
from kdlib.core.train import progress
from kdlib.loihi import lava_compat
from kdlib.loihi.fixed_point import (
    HEADROOMS,
    FixedRun,
    LoihiNetwork,
    NotDeployable,
    convert,
    payload,
    run,
)
from kdlib.loihi.slayer import LoihiMLP
from kdlib.measure.spikes import neuron_updates

if TYPE_CHECKING:
    pass

lava_compat.install()  # before any Lava import, the caller's own included


_LAVA_MP = "lava.magma.runtime.message_infrastructure.multiprocessing"


def _lava_runtime() -> None:
    """Import Lava's runtime, wherever in a session this happens first.

    Lava calls ``multiprocessing.set_start_method('fork')`` when its runtime is imported, which raises if
    the default context has been fixed already, as any multiprocessing lock does (a tqdm progress bar
    makes one). A context fixed to 'fork', Linux's default, is released first; Lava sets it again.
    """
    lava_compat.install()
    if _LAVA_MP not in sys.modules and multiprocessing.get_start_method(allow_none=True) == "fork":
        multiprocessing.set_start_method(None, force=True)
    import lava.magma.runtime.runtime  # noqa: F401


# ------------------------------------------------------------------------------------------- netx files
class NetxError(RuntimeError):
    """A netx file that the workbook's Lava runner cannot run; the message names the file and the layer."""


NETX_NEURONS = ("CUBA", "LOIHI")  # netx's names for Loihi's current-based LIF neuron


def _netx_text(group: Any, key: str) -> str | None:
    """A short string stored in a netx group (as bytes, str, or a one-element array of either), or None."""
    import h5py

    item = group.get(key)
    if not isinstance(item, h5py.Dataset):
        return None
    value = item[()]
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _netx_dims(group: Any, where: str) -> list[int]:
    """The integer ``shape`` dataset of a layer group."""
    import h5py

    shape = group.get("shape")
    if not isinstance(shape, h5py.Dataset) or shape.dtype.kind not in "iu" or not 0 < shape.size <= 16:
        raise NetxError(f"{where} has no integer 'shape' dataset")
    return [int(n) for n in np.asarray(shape[()]).reshape(-1)]


def _netx_dense(group: Any, where: str, inputs: int | None) -> tuple[int, int]:
    """Check one dense layer group; return its (inputs, neurons)."""
    import h5py

    weight = group.get("weight")
    if not isinstance(weight, h5py.Dataset) or weight.ndim != 2 or weight.dtype.kind not in "iuf":
        raise NetxError(f"{where} has no 2-D numeric 'weight' dataset (out, in)")
    out_features, in_features = (int(n) for n in weight.shape)
    dims = _netx_dims(group, where)
    if math.prod(dims) != out_features:
        raise NetxError(f"{where} is shaped {tuple(dims)}, which does not hold its {out_features} weight rows")
    if "delay" in group:
        raise NetxError(f"{where} has synaptic delays, which the runner's image-by-image timing does not model")
    neuron = group.get("neuron")
    neuron_type = _netx_text(neuron, "type") if isinstance(neuron, h5py.Group) else None
    if neuron_type not in NETX_NEURONS:
        raise NetxError(f"{where} has neuron type {neuron_type!r}; the runner supports {' and '.join(NETX_NEURONS)} "
                        "(Loihi's current-based LIF)")
    if inputs is not None and in_features != inputs:
        raise NetxError(f"{where} takes {in_features} inputs but what comes before it gives {inputs}")
    return in_features, out_features


def check_netx(path: str | Path) -> list[int]:
    """Check that ``path`` is a netx network :func:`run_lava` can run, before Lava sees it.

    That is a chain of ``dense`` layers of CUBA neurons without delays, numbered 0, 1, ..., fed with flat
    spike vectors; a leading shape-only ``input`` entry and ``flatten`` entries, which netx builds no
    process for, are allowed. Returns the widths: inputs, then every dense layer's neurons. Anything else
    (an Input block with neurons, a convolution, pooling, image-shaped layers) raises one
    :class:`NetxError` that names the file and the layer.
    """
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise NetxError(f"{path} is not an HDF5 file that netx can read ({str(err).splitlines()[0]})") from None
    try:
        with handle:
            layers = handle.get("layer")
            if not isinstance(layers, h5py.Group) or len(layers) == 0:
                raise NetxError(f"{path} has no 'layer' group of netx layers")
            names = sorted(layers.keys())
            if names != sorted(str(i) for i in range(len(names))):
                raise NetxError(f"{path}: layers must be named 0 to {len(names) - 1}, found {', '.join(names)[:200]}")
            widths: list[int] = []
            inputs: int | None = None
            for i in range(len(names)):
                group, where = layers[str(i)], f"{path}: layer {i}"
                if not isinstance(group, h5py.Group):
                    raise NetxError(f"{where} is not a group")
                kind = _netx_text(group, "type")
                if kind == "input" and not widths and "neuron" not in group:
                    inputs = math.prod(_netx_dims(group, where))  # a shape only: netx makes no process of it
                elif kind == "input":
                    raise NetxError(f"{where} is an Input block with neurons, which Lava cannot compile under "
                                    "Loihi2SimCfg here (no subcompiler for PyInputModel): export the network "
                                    "without it; the runner streams the input spikes into the first dense layer")
                elif kind == "flatten":
                    continue
                elif kind == "dense":
                    n_in, n_out = _netx_dense(group, where, widths[-1] if widths else inputs)
                    widths += [n_out] if widths else [n_in, n_out]
                else:
                    raise NetxError(f"{where} is of type {kind!r}: the runner streams flat spike vectors through "
                                    "a chain of 'dense' layers only (no convolution, pooling or other blocks)")
            if not widths:
                raise NetxError(f"{path} has no dense layer")
            return widths
    except NetxError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError, OverflowError) as err:
        raise NetxError(f"{path} is not a readable netx file ({type(err).__name__}: {err})") from None


# ------------------------------------------------------------------------------------------ counting spikes
def spike_chunks(split: Split, steps: int, chunk_size: int, seed: int = 0) -> Iterator[Tensor]:
    """The rate-coded input of a split, ``chunk_size`` images at a time: (steps, B, 1, 28, 28) 0/1 tensors.

    The same arguments give the same spikes, so PyTorch and Lava can each draw their own copy."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(split), chunk_size):
        yield encode(split.x[start:start + chunk_size], steps, "rate", gen)


@dataclass(frozen=True)
class ImageSpikes:
    """Spikes per image: ``outputs`` (N, classes) of the output layer by class, ``layers`` (N, spiking
    layers) in total, ``inputs`` (N,) the input spikes."""

    outputs: np.ndarray
    layers: np.ndarray
    inputs: np.ndarray

    @classmethod
    def concat(cls, parts: Iterable[ImageSpikes]) -> ImageSpikes:
        parts = list(parts)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("outputs", "layers", "inputs")))

    def predictions(self) -> np.ndarray:
        """The class with the most output spikes (the lowest class index among tied counts)."""
        return self.outputs.argmax(1)

    def ties(self) -> np.ndarray:
        """Images whose highest output count is shared by several classes (the prediction depends on class order)."""
        return (self.outputs == self.outputs.max(1, keepdims=True)).sum(1) > 1

    def synops(self, net: LoihiMLP | LoihiNetwork) -> np.ndarray:
        """Synaptic operations per image: every spike, input spikes included, times the synapses it drives."""
        return self.inputs * net.input_fan_out() + self.layers @ np.asarray(net.fan_outs())

    def neuron_updates(self, net: LoihiMLP | LoihiNetwork, steps: int) -> int:
        """Neuron state updates per image: every neuron, every step."""
        return neuron_updates(net.layer_widths(), steps)


@torch.no_grad()
def run_torch(net: LoihiMLP, chunks: Iterable[Tensor]) -> ImageSpikes:
    """Count the spikes of the PyTorch model on a stream of input chunks (from :func:`spike_chunks`)."""
    net.eval()
    parts = []
    for x_seq in chunks:
        out = net(x_seq)
        parts.append(ImageSpikes(
            outputs=out.spikes[-1].sum(0).long().numpy(),
            layers=torch.stack([s.sum(0).flatten(1).sum(1) for s in out.spikes], 1).long().numpy(),
            inputs=x_seq.sum(0).flatten(1).sum(1).long().numpy(),
        ))
    return ImageSpikes.concat(parts)


@dataclass(frozen=True)
class LavaRun:
    """What :func:`run_lava` measured: the spike counts, the simulated steps and the wall time, and the
    output layer's voltage at each image's last step when it was read (``readout``, (N, classes))."""

    counts: ImageSpikes
    steps: int
    seconds: float
    readout: np.ndarray | None = None

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def _simulate(path: Path, x_seq: Tensor, trains: bool = False, message_bits: int = 0,
              readout: bool = False) -> tuple[list[np.ndarray], int, np.ndarray | None]:
    """Run the images of ``x_seq`` (T, B, ...) back to back through a fresh Lava network built from ``path``.

    Returns, per layer, its activity in the steps that belong to the images, image after image, T columns
    each: every neuron's spikes, (neurons, B·T), for the output layer and, with ``trains``, for every
    layer; otherwise, for a hidden layer, its spike count per step, (1, B·T), summed inside Lava by a
    Dense connection of ones (reading whole spike trains back from Lava is slow). Also returns the steps run.

    Timing in Lava (1-based steps): the source sends stream column c (0-based) at step c + 1; a Dense
    synapse passes on at step s + 1 what arrived at step s, so the neurons of layer l process column c at
    step c + 2 + l. netx resets layer l (current and voltage) at every step s ≡ reset_offset + 1 + l
    (mod T), before the step's update: ``reset_offset=1`` puts that reset right before the first column
    of each image arrives. (netx's default, 0, is meant for networks that start with an input block, one
    more layer of delay; here it would let the last input step of each image leak into the next.) A sink
    stores at column s − 1 what arrives at step s, so layer l's spikes for image k fill sink columns
    [kT + 1 + l, kT + T + 1 + l); a counter adds one step. The last image leaves the output layer
    ``depth`` steps after its last input column, so the run is that much longer; the source wraps around
    meanwhile, into a window that is never read.

    ``message_bits`` > 0 sends the stream's integers as graded spikes. With ``readout``, the output layer's
    voltage is also recorded (a Monitor) and returned at the last step of each image, (B, neurons): for a
    readout layer that integrates and never fires (:mod:`kdlib.loihi.fixed_point`). A monitor's row s − 1 holds
    the state after step s, so image k's last step is row kT + T + l for the output layer l.
    """
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.monitor.process import Monitor

    steps, images = x_seq.shape[:2]
    stream = x_seq.reshape(steps, images, -1).permute(2, 1, 0).reshape(-1, images * steps)  # image after image
    inputs = check_netx(path)[0]
    if stream.shape[0] != inputs:
        raise NetxError(f"{path}: layer 0 takes {inputs} inputs, but the images give {stream.shape[0]} per step")
    net = netx.hdf5.Network(net_config=str(path), reset_interval=steps, reset_offset=1,
                            input_message_bits=message_bits)
    depth = len(net.layers)
    run_steps = images * steps + depth
    source = Source(data=stream.numpy().astype(np.int32))
    source.s_out.connect(net.inp)
    monitors = []
    for i, layer in enumerate(net.layers):
        if trains or i == depth - 1:
            sink = Sink(shape=layer.out.shape, buffer=run_steps)
            layer.out.connect(sink.a_in)
            monitors.append((sink, 1 + i))
        else:
            adder = Dense(weights=np.ones((1, layer.out.shape[0]), dtype=np.int32))
            sink = Sink(shape=(1,), buffer=run_steps)
            layer.out.connect(adder.s_in)
            adder.a_out.connect(sink.a_in)
            monitors.append((sink, 2 + i))
    voltage = None
    if readout:
        voltage = Monitor()
        voltage.probe(target=net.layers[-1].neuron.v, num_steps=run_steps)
    try:
        net.run(condition=RunSteps(num_steps=run_steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        series = [sink.data.get()[:, first:first + images * steps].round().astype(np.int64)
                  for sink, first in monitors]
        last_steps = np.arange(images) * steps + steps + depth - 1
        final = None if voltage is None else \
            voltage.get_data()[net.layers[-1].neuron.name]["v"][last_steps].round().astype(np.int64)
    finally:
        net.stop()
    return series, run_steps, final


def run_lava(path: str | Path, chunks: Iterable[Tensor], total: int | None = None, *, message_bits: int = 0,
             readout: bool = False) -> LavaRun:
    """Run the exported network in Lava's bit-accurate Loihi simulation (``Loihi2SimCfg``, ``fixed_pt``)
    on a stream of input chunks, (T, B, ...) each (from :func:`spike_chunks`, or graded messages with
    ``message_bits`` > 0; ``total``: the number of chunks, for the progress bar).

    Each chunk is one Lava run of its images back to back, T steps each, with every layer reset between
    images (see :func:`_simulate`); the spikes of every layer per image are counted in Lava, and with
    ``readout`` the output layer's voltage at each image's last step is read too.
    """
    _lava_runtime()
    parts, finals, steps, tic = [], [], 0, time.perf_counter()
    for x_seq in progress(chunks, total=total, desc="Lava", unit="chunk", mininterval=0):
        t, images = x_seq.shape[:2]
        series, run_steps, final = _simulate(Path(path), x_seq, message_bits=message_bits, readout=readout)
        per_image = [s.reshape(len(s), images, t).sum(-1) for s in series]  # (neurons or 1, B)
        parts.append(ImageSpikes(outputs=per_image[-1].T, layers=np.stack([p.sum(0) for p in per_image], 1),
                                 inputs=x_seq.ne(0).sum(0).flatten(1).sum(1).long().numpy()))
        finals.append(final)
        steps += run_steps
    voltage = np.concatenate(finals) if readout else None
    return LavaRun(ImageSpikes.concat(parts), steps, time.perf_counter() - tic, voltage)


def lava_spike_trains(path: str | Path, x_seq: Tensor, message_bits: int = 0) -> list[np.ndarray]:
    """Every layer's spikes in Lava for a few images: one (T, B, neurons) 0/1 array per layer, in the
    layout of :attr:`SpikingOutput.spikes` (for rasters and step-by-step checks)."""
    _lava_runtime()
    steps, images = x_seq.shape[:2]
    series, _, _ = _simulate(Path(path), x_seq, trains=True, message_bits=message_bits)
    return [s.reshape(len(s), images, steps).transpose(2, 1, 0) for s in series]


def compare(labels: Tensor | np.ndarray, lava: ImageSpikes, fixed: ImageSpikes,
            floating: ImageSpikes | None = None) -> pd.DataFrame:
    """One row per image: label, predictions of Lava, the PyTorch fixed-point model (and the float-weight
    model), whether Lava's output counts and per-layer spikes equal PyTorch's, ties, Lava's spike counts."""
    frame = pd.DataFrame({
        "label": np.asarray(labels), "lava": lava.predictions(), "torch_fixed": fixed.predictions(),
        "same_prediction": lava.predictions() == fixed.predictions(),
        "same_output_counts": (lava.outputs == fixed.outputs).all(1),
        "same_layer_spikes": (lava.layers == fixed.layers).all(1),
        "lava_tie": lava.ties(), "lava_top_count": lava.outputs.max(1), "input_spikes": lava.inputs,
    })
    if floating is not None:
        frame.insert(3, "torch_float", floating.predictions())
    for i in range(lava.layers.shape[1]):
        frame[f"spikes_layer{i}"] = lava.layers[:, i]
    return frame


# ------------------------------------------------------------------------------ the students of stage 2
def selected_seed(metrics: dict[str, Any]) -> int:
    """The seed of a stage-2 run whose student has the best validation accuracy (the lowest seed among ties):
    the student that model selection on validation deploys."""
    seeds = metrics["seeds"]
    return int(max(sorted(seeds, key=int), key=lambda s: seeds[s]["val_accuracy"]))


@dataclass(frozen=True)
class Deployment:
    """A stage-2 student in Loihi's integers: the network, the validation accuracy of every candidate
    (``candidates``: (input bits, headroom) → accuracy), and the test set in the PyTorch fixed-point model
    (``fixed``) beside the float student's predictions (``floating``)."""

    net: LoihiNetwork
    candidates: dict[tuple[int, float], float]
    fixed: FixedRun
    floating: np.ndarray

    @property
    def val_accuracy(self) -> float:
        return self.candidates[(self.net.input_bits, self.net.headroom)]


@torch.no_grad()
def to_loihi(student: nn.Module, val: Split, test: Split, *, steps: int, input_bits: Iterable[int],
             calibration_images: int, name: str) -> Deployment:
    """Map ``student`` onto Loihi's integers at every candidate resolution of ``input_bits`` and every
    headroom of :data:`kdlib.loihi.fixed_point.HEADROOMS`, keep the one with the best validation accuracy (among
    ties: the fewest bits, then the larger headroom), and run the test set through it. A candidate whose
    integers do not fit is left out (it has no entry in ``candidates``).

    Raises :class:`kdlib.loihi.fixed_point.NotDeployable` for a student the chip has no model for, or that no
    candidate fits."""
    labels = val.y.numpy()
    nets, refusals = {}, []
    for b in sorted(set(input_bits)):
        for h in HEADROOMS:
            try:
                nets[b, h] = convert(student, val.x[:calibration_images], steps=steps, input_bits=b, headroom=h,
                                     name=name)
            except NotDeployable as err:  # this resolution does not fit; another may
                refusals.append(f"{b} bits, headroom {h:g}: {str(err).removeprefix(f'{name}: ')}")
    if not nets:
        raise NotDeployable(f"{name}: no candidate fits ({'; '.join(refusals)})")
    candidates = {key: float((run(net, payload(val.x, key[0])).predictions() == labels).mean())
                  for key, net in nets.items()}
    best = max(candidates, key=lambda k: (candidates[k], -k[0], k[1]))
    floating = student(encode(test.x, steps, "direct")).logits.argmax(1).numpy()
    return Deployment(nets[best], candidates, run(nets[best], payload(test.x, best[0])), floating)


def message_chunks(net: LoihiNetwork, x: Tensor, chunk_size: int) -> Iterator[Tensor]:
    """The graded input messages of images ``x``, ``chunk_size`` images at a time, (T, B, pixels) each."""
    for start in range(0, len(x), chunk_size):
        messages = payload(x[start:start + chunk_size], net.input_bits)
        yield messages.unsqueeze(0).expand(net.steps, *messages.shape)


def compare_readout(labels: Tensor | np.ndarray, lava: LavaRun, fixed: FixedRun,
                    floating: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image run in Lava: label, predictions of Lava, the PyTorch fixed-point model (and the
    float student), whether Lava's readout voltages and every layer's spike count equal PyTorch's, ties of
    the readout, the input messages and Lava's spikes per layer."""
    if lava.readout is None:
        raise ValueError("this Lava run did not read the readout layer's voltage (run_lava(..., readout=True))")
    n = len(lava.readout)
    predicted = lava.readout.argmax(1)
    frame = pd.DataFrame({
        "label": np.asarray(labels)[:n], "lava": predicted, "torch_fixed": fixed.predictions()[:n],
        "same_prediction": predicted == fixed.predictions()[:n],
        "same_readout": (lava.readout == fixed.readout[:n]).all(1),
        "same_layer_spikes": (lava.counts.layers == fixed.layers[:n]).all(1),
        "lava_tie": (lava.readout == lava.readout.max(1, keepdims=True)).sum(1) > 1,
        "input_messages": lava.counts.inputs,
    })
    if floating is not None:
        frame.insert(3, "torch_float", np.asarray(floating)[:n])
    for i in range(lava.counts.layers.shape[1]):
        frame[f"spikes_layer{i}"] = lava.counts.layers[:, i]
    return frame
