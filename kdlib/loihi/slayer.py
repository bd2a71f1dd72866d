"""The Loihi student: a network of lava-dl SLAYER blocks, trained like every other student.

:class:`LoihiMLP` is a fully connected network of lava-dl SLAYER ``block.cuba.Dense`` layers: Loihi's
current-based LIF neuron computed in the chip's fixed-point arithmetic, and weights quantised to Loihi's
8 bits in every forward pass (so training is quantisation-aware). Its input is the rate-coded image,
binary spikes as Loihi takes them; its output layer spikes too, and the logits are its spike counts. It
implements the workbook's student interface (:class:`kdlib.snn.students.Student`), so it is trained by
:func:`kdlib.kd.distill.distill` with any objective of :mod:`kdlib.kd.losses`, and its spikes are counted the
same way as every other student's. :class:`kdlib.core.params.LoihiParams` describes it and can stand in for
the student parameters that ``distill`` reads. :meth:`LoihiMLP.export_hdf5` writes it in lava-dl's netx
format, for :mod:`kdlib.loihi.deploy` to run in Lava.

Importing this module installs :func:`kdlib.loihi.lava_compat.install`, so that lava-dl imports in this
environment; SLAYER itself is imported when the first network is built.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from kdlib.core.io import atomic_path
from kdlib.core.params import PIXELS, LoihiParams
from kdlib.loihi import lava_compat
from kdlib.snn.students import SpikingOutput

lava_compat.install()  # before any Lava import, the caller's own included


def _slayer() -> ModuleType:
    """lava-dl's SLAYER (about 9 s to import the first time).

    SLAYER imports ``torch.utils.cpp_extension``, which logs a warning on a machine without CUDA ("No CUDA
    runtime is found"), and its object-detection datasets print one when an optional toolbox is missing
    ("Prophesee Dataset Toolbox could not be found"). The workbook runs SLAYER on the CPU and uses neither,
    so both are silenced; anything else printed on import is passed on."""
    lava_compat.install()
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        from lava.lib.dl import slayer
    print("".join(line for line in printed.getvalue().splitlines(keepends=True)
                  if "prophesee" not in line.lower()), end="")  # its three lines all name it
    return slayer


# ------------------------------------------------------------------------------------------------ student
class LoihiMLP(nn.Module):
    """input → [SLAYER CUBA-LIF Dense] × (hidden layers + 1): every layer spikes, the last one per class.

    SLAYER computes on (batch, neurons, time) tensors; :meth:`forward` takes and returns the workbook's
    time-first layout. ``delay_shift`` is off: here a spike reaches the next layer in the same step, while
    Loihi takes one step per layer; :func:`run_lava` lines the two up, so that every layer sees all ``T``
    input steps of an image on both.
    """

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int, *, threshold: float,
                 current_decay: float, voltage_decay: float, tau_grad: float, scale_grad: float,
                 logit_scale: float) -> None:
        super().__init__()
        slayer = _slayer()
        neuron = {"threshold": threshold, "current_decay": current_decay, "voltage_decay": voltage_decay,
                  "tau_grad": tau_grad, "scale_grad": scale_grad, "requires_grad": False}
        widths = (in_features, *hidden, num_classes)
        self.blocks = nn.ModuleList(slayer.block.cuba.Dense(neuron, a, b, delay_shift=False)
                                    for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.logit_scale = logit_scale

    def forward(self, x_seq: Tensor) -> SpikingOutput:
        steps, batch = x_seq.shape[:2]
        h = x_seq.reshape(steps, batch, -1).permute(1, 2, 0)  # (B, N, T)
        spikes = []
        for block in self.blocks:
            h = block(h)
            spikes.append(h.permute(2, 0, 1))
        # outputs scaled by T so that their mean over time, the logits, is logit_scale × the spike count
        return SpikingOutput(spikes[-1] * (steps * self.logit_scale), spikes)

    def layer_widths(self) -> list[int]:
        """Neurons per spiking layer, the output layer included."""
        return [block.synapse.out_channels for block in self.blocks]

    def hidden_widths(self) -> list[int]:
        """Neurons per hidden layer (what feature-distillation objectives pair with the teacher's)."""
        return self.layer_widths()[:-1]

    def fan_outs(self) -> list[int]:
        """Synapses driven by one spike of each spiking layer; the output layer drives none."""
        return [*self.layer_widths()[1:], 0]

    def input_fan_out(self) -> int:
        """Synapses driven by one input spike."""
        return self.layer_widths()[0]

    def quantized_weights(self) -> list[Tensor]:
        """The integer weights the chip stores (Loihi's 8-bit mantissas, SLAYER's scale of 64), (out, in)."""
        return [block.synapse.pre_hook_fx(block.synapse.weight, descale=True).detach().flatten(1)
                for block in self.blocks]

    @contextlib.contextmanager
    def float_weights(self) -> Iterator[LoihiMLP]:
        """Within the block, run with the unquantised weights (the neuron arithmetic stays fixed-point)."""
        hooks = [block.synapse.pre_hook_fx for block in self.blocks]
        try:
            for block in self.blocks:
                block.synapse.pre_hook_fx = None
            yield self
        finally:
            for block, hook in zip(self.blocks, hooks, strict=True):
                block.synapse.pre_hook_fx = hook

    def export_hdf5(self, path: str | Path) -> Path:
        """Write the network for ``lava.lib.dl.netx`` (layer groups of quantised weights and neuron
        parameters), atomically. netx keeps the file open while a network built from it exists."""
        import h5py

        if any(block.neuron.shape is None for block in self.blocks):  # SLAYER learns its shapes in a forward pass
            with torch.no_grad():
                self(torch.zeros(1, 1, self.blocks[0].synapse.in_channels))
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
            layers = handle.create_group("layer")
            for i, block in enumerate(self.blocks):
                block.export_hdf5(layers.create_group(str(i)))
        return Path(path)


def build_loihi_student(cfg: LoihiParams, num_classes: int = 10, seed: int = 0) -> LoihiMLP:
    """The student described by ``cfg``, initialised from ``seed``."""
    torch.manual_seed(seed)
    return LoihiMLP(PIXELS, tuple(cfg.hidden), num_classes, threshold=cfg.threshold,
                    current_decay=cfg.current_decay, voltage_decay=cfg.voltage_decay, tau_grad=cfg.tau_grad,
                    scale_grad=cfg.scale_grad, logit_scale=cfg.logit_scale)
