"""Tests for :mod:`kdlib.loihi.fixed_point` and the deployment of stage-2 students in :mod:`kdlib.loihi.deploy`: the
integers stand for the float student, Lava computes exactly what the PyTorch model of the integers computes
(readout voltages, every layer's spikes, step by step), and what the chip cannot run is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdlib.core.data import Split
from kdlib.loihi import deploy
from kdlib.loihi import fixed_point as FP
from kdlib.snn.students import BinarySTEParameters, LeakySTEParameters, LIFParameters, SpikingMLP

pytest.importorskip("lava.lib.dl.netx")

STEPS = 4


def _student(neuron: object = LIFParameters(2.0, 1.0), features: int = 16) -> SpikingMLP:
    """A small LIF student whose every layer spikes on random images (weights scaled up for drive)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = SpikingMLP(features, (12, 10), 4, neuron=neuron).eval()
        with torch.no_grad():
            for synapse in net.synapses:
                synapse.weight.mul_(5.0)
                synapse.bias.add_(0.3)
    return net


def _images(n: int, seed: int, features: int = 16) -> torch.Tensor:
    """Images in [0, 1] on the 8-bit grid of real pixels."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, features), generator=gen).float() / 255


def _float_predictions(student: SpikingMLP, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return student(x.unsqueeze(0).expand(STEPS, *x.shape)).logits.argmax(1).numpy()


def test_the_integers_stand_for_the_float_student() -> None:
    student, x = _student(), _images(400, 1)
    net = FP.convert(student, _images(200, 2), steps=STEPS, input_bits=8)
    for layer in net.layers:
        assert layer.weight.dtype == np.int64 and (layer.weight % 2 == 0).all()
        assert FP.WEIGHT_MIN <= layer.weight.min() and layer.weight.max() <= FP.WEIGHT_MAX
        assert 1 <= layer.threshold <= FP.THRESHOLD_MAX and np.abs(layer.bias).max() <= FP.BIAS_MAX
        assert layer.current_decay == 4095 and layer.limit in ("weights", "bias", "threshold", "current", "readout")
    assert [layer.voltage_decay for layer in net.layers] == [2048, 2048, 0]  # 1/τ, and none for the readout
    assert net.layers[-1].threshold == FP.THRESHOLD_MAX
    fixed = FP.run(net, FP.payload(x, 8))
    assert (fixed.layers[:, :2] > 0).mean() > 0.9  # the hidden layers fire
    assert (fixed.layers[:, 2] == 0).all()  # the readout never does
    assert (fixed.predictions() == _float_predictions(student, x)).mean() >= 0.9
    assert fixed.peak_current < FP.STATE_LIMIT >> FP.SHIFT  # no current wrapped


def test_lava_computes_the_integers_bit_for_bit(tmp_path: Path) -> None:
    net = FP.convert(_student(), _images(200, 2), steps=STEPS, input_bits=5)
    path = FP.export_netx(net, tmp_path / "student.net")
    assert deploy.check_netx(path) == [16, 12, 10, 4]
    x = _images(9, 3)
    chunks = list(deploy.message_chunks(net, x, 5))  # two Lava runs, images back to back, reset between them
    lava = deploy.run_lava(path, chunks, message_bits=net.input_bits, readout=True)
    fixed = FP.run(net, FP.payload(x, net.input_bits))
    assert (fixed.layers[:, :2] > 0).mean() > 0.9
    np.testing.assert_array_equal(lava.readout, fixed.readout)
    np.testing.assert_array_equal(lava.counts.layers, fixed.layers)
    np.testing.assert_array_equal(lava.counts.inputs, STEPS * FP.payload(x, 5).ne(0).sum(1).numpy())
    frame = deploy.compare_readout(torch.zeros(9, dtype=torch.long), lava, fixed)
    assert frame.same_prediction.all() and frame.same_readout.all() and frame.same_layer_spikes.all()

    trains = deploy.lava_spike_trains(path, chunks[0], message_bits=net.input_bits)  # step by step
    first = FP.run(net, FP.payload(x[:5], net.input_bits))
    for got, want in zip(trains, first.trains, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_rate_coded_input_runs_through_the_same_integers() -> None:
    net = FP.convert(_student(), _images(200, 2), steps=STEPS, input_bits=1)
    spikes = torch.bernoulli(torch.full((STEPS, 6, 16), 0.4), generator=torch.Generator().manual_seed(0)).long()
    fixed = FP.run(net, spikes)
    assert fixed.readout.shape == (6, 4) and fixed.layers.shape == (6, 3)
    with pytest.raises(ValueError, match="3 input steps for a network of 4"):
        FP.run(net, spikes[:3])


@pytest.mark.parametrize(("neuron", "words"), [
    (LeakySTEParameters(2.0, 1.0), "LeakySTEParameters neurons"),
    (BinarySTEParameters(1.0), "BinarySTEParameters neurons"),
])
def test_a_student_the_chip_cannot_run_is_refused_by_name(neuron: object, words: str) -> None:
    with pytest.raises(FP.NotDeployable, match=f"^ste_x: {words}.*CUBA"):
        FP.convert(_student(neuron), _images(10, 2), steps=STEPS, input_bits=4, name="ste_x")


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"input_bits": 0}, "input_bits = 0"),
    ({"input_bits": 9}, "input_bits = 9"),
])
def test_an_impossible_resolution_is_refused(kwargs: dict, words: str) -> None:
    with pytest.raises(FP.NotDeployable, match=words):
        FP.convert(_student(), _images(10, 2), steps=STEPS, name="kd", **kwargs)


def test_a_leak_outside_twelve_bits_is_refused() -> None:
    with pytest.raises(FP.NotDeployable, match="tau_mem = 0.5.*12 bits"):
        FP.convert(_student(LIFParameters(0.5, 1.0)), _images(10, 2), steps=STEPS, input_bits=4, name="kd")


def test_to_loihi_chooses_on_validation_and_keeps_the_test_split_for_the_end() -> None:
    student = _student()
    val, test = Split(_images(300, 4), torch.from_numpy(_float_predictions(student, _images(300, 4)))), \
        Split(_images(100, 5), torch.zeros(100, dtype=torch.long))
    d = deploy.to_loihi(student, val, test, steps=STEPS, input_bits=[2, 8], calibration_images=100, name="kd")
    assert set(d.candidates) == {(b, h) for b in (2, 8) for h in FP.HEADROOMS}
    assert d.val_accuracy == max(d.candidates.values())
    assert d.fixed.readout.shape == (100, 4)
    np.testing.assert_array_equal(d.floating, _float_predictions(student, test.x))


def test_the_deployed_seed_is_the_best_on_validation() -> None:
    metrics = {"seeds": {"0": {"val_accuracy": 0.91}, "1": {"val_accuracy": 0.93}, "2": {"val_accuracy": 0.93}}}
    assert deploy.selected_seed(metrics) == 1


def test_lava_and_the_model_agree_where_currents_wrap_voltages_clip_and_the_readout_fires(tmp_path: Path) -> None:
    """A hand-built network driven far past every limit: the 24-bit current wraps (and, in the first layer,
    Lava's int32 shift overflows), voltages clip, and the readout fires; the model must still be exact."""
    gen = torch.Generator().manual_seed(7)
    first = torch.randint(-128, 128, (6, 600), generator=gen) * 2
    first[0], first[1] = 254, -256  # |a| up to 254 · 255 · 600 > 2²⁵: a << 6 overflows int32
    hidden = FP.LoihiLayer(first.numpy(), np.array([0, 4095, -4095, 7, 0, 3]), 500, 4095, 2048, 1.0, "weights")
    readout = FP.LoihiLayer(np.full((3, 6), 254), np.array([4095, 0, -4095]), 300, 4095, 0, 1.0, "readout")
    net = FP.LoihiNetwork((hidden, readout), STEPS, 8, 1.0)
    messages = torch.randint(0, 256, (6, 600), generator=gen)
    messages[0] = 255
    fixed = FP.run(net, messages)
    assert fixed.peak_current << FP.SHIFT >= 2 ** 31 and fixed.layers[:, 1].sum() > 0  # overflow, readout fired

    path = FP.export_netx(net, tmp_path / "wild.net")
    chunks = [messages.unsqueeze(0).expand(STEPS, *messages.shape)]
    lava = deploy.run_lava(path, chunks, message_bits=8, readout=True)
    np.testing.assert_array_equal(lava.readout, fixed.readout)
    np.testing.assert_array_equal(lava.counts.layers, fixed.layers)
    for got, want in zip(deploy.lava_spike_trains(path, chunks[0], message_bits=8), fixed.trains, strict=True):
        np.testing.assert_array_equal(got, want)


def test_an_all_inhibitory_layer_is_refused() -> None:
    student = _student()
    with torch.no_grad():
        student.head.weight.copy_(-student.head.weight.abs())
    with pytest.raises(FP.NotDeployable, match="layer 2 has no positive weight"):
        FP.convert(student, _images(50, 2), steps=STEPS, input_bits=4, name="kd")


def test_to_loihi_refuses_a_student_that_no_candidate_fits() -> None:
    student = _student()
    with torch.no_grad():
        student.head.weight.copy_(-student.head.weight.abs())
    split = Split(_images(60, 4), torch.zeros(60, dtype=torch.long))
    with pytest.raises(FP.NotDeployable, match=r"^kd: no candidate fits \(2 bits, headroom 2: layer 2 has no positive"):
        deploy.to_loihi(student, split, split, steps=STEPS, input_bits=[2], calibration_images=50, name="kd")
