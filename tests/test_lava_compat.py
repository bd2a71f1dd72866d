"""Tests for :mod:`kdlib.loihi.lava_compat`: Lava imports and runs on Python 3.11 once the hook is installed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kdlib.loihi import lava_compat

lava_compat.install()  # Before anything in this module imports Lava.

TARGET = "lava.magma.compiler.var_model"


def _finders() -> list[object]:
    return [finder for finder in sys.meta_path if isinstance(finder, lava_compat._LavaVarModelFinder)]


def test_lava_runtime_imports_and_encoders_are_independent() -> None:
    import lava.magma.core  # noqa: F401
    from lava.magma.compiler import var_model

    first, second = var_model.CoreEncoder(), var_model.CoreEncoder()
    assert first.x == var_model.ByteEncoder()
    assert first.x is not second.x and first.x is not first.y
    first.x.ptr = 7
    assert second.x.ptr == 0
    chip, axon = var_model.ChipEncoder(), var_model.AxonEncoder()
    assert chip.z is not var_model.ChipEncoder().z and axon.hi is not axon.lo
    assert isinstance(var_model.__spec__.loader, lava_compat._PatchingLoader)


def test_install_is_idempotent() -> None:
    lava_compat.install()
    lava_compat.install()
    assert len(_finders()) == 1


def test_hook_leaves_other_and_fixed_modules_alone() -> None:
    finder = lava_compat._LavaVarModelFinder()
    assert finder.find_spec("json", None) is None
    fixed = "@dataclass\nclass A:\n    x: ByteEncoder = field(default_factory=ByteEncoder)\n"
    assert lava_compat._patch_source(fixed) is None
    broken = "@dataclass\nclass A:\n    x: ByteEncoder = ByteEncoder()\n    y: int = 0\n"
    patched = lava_compat._patch_source(broken)
    assert patched is not None
    assert "x: ByteEncoder = _kdlib_dataclass_field(default_factory=ByteEncoder)" in patched
    assert patched.count("\n") == broken.count("\n")


class _TinySlayerNet(torch.nn.Module):
    """Two CUBA dense layers, 16 -> 8 -> 4, exported the way lava-dl's tutorials do it."""

    def __init__(self) -> None:
        from lava.lib.dl import slayer

        super().__init__()
        neuron = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.03, "requires_grad": False}
        self.blocks = torch.nn.ModuleList(
            [slayer.block.cuba.Dense(neuron, 16, 8), slayer.block.cuba.Dense(neuron, 8, 4)]
        )

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            spikes = block(spikes)
        return spikes

    def export_hdf5(self, filename: Path) -> None:
        import h5py

        with h5py.File(filename, "w") as handle:
            layers = handle.create_group("layer")
            for index, block in enumerate(self.blocks):
                block.export_hdf5(layers.create_group(f"{index}"))


def test_slayer_export_runs_in_lava_fixed_point(tmp_path: Path) -> None:
    pytest.importorskip("lava.lib.dl.slayer")
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as SpikeSink
    from lava.proc.io.source import RingBuffer as SpikeSource

    steps = 16
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = _TinySlayerNet()
        with torch.no_grad():
            for block in net.blocks:
                block.synapse.weight.mul_(3.0)  # Enough drive for the output layer to spike.
        spikes_in = (torch.rand(1, 16, steps) < 0.3).float()
        expected = net(spikes_in)[0].detach().numpy()
    assert expected.shape == (4, steps) and expected.sum() > 0

    path = tmp_path / "tiny.net"
    net.export_hdf5(path)
    lava_net = netx.hdf5.Network(net_config=str(path))
    assert lava_net.inp.shape == (16,) and lava_net.out.shape == (4,)

    source = SpikeSource(data=spikes_in[0].numpy().astype(np.int32))
    sink = SpikeSink(shape=lava_net.out.shape, buffer=steps)
    source.s_out.connect(lava_net.inp)
    lava_net.out.connect(sink.a_in)
    try:
        lava_net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        received = sink.data.get()
    finally:
        lava_net.stop()

    assert received.shape == (4, steps)
    # SLAYER's default delay_shift models Loihi's one-step-per-layer latency, so the runs agree exactly.
    np.testing.assert_array_equal(received, expected)
