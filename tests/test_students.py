"""Spiking students: the shared interface, neuron dynamics and gradients, determinism, accounting."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import Tensor

from kdlib.core import params as P
from kdlib.core.data import Dataset, Split, encode
from kdlib.core.params import CEVariant
from kdlib.measure.analysis import NEURON_STEPS_PER_CHUNK, chunk_size_for, evaluate
from kdlib.snn import native
from kdlib.snn.students import (
    BinarySTEParameters,
    LeakySTEParameters,
    LIFParameters,
    SpikingCNN,
    SpikingMLP,
    SpikingNeurons,
    StraightThrough,
    build_student,
    conv_layers,
    load_student,
    save_student,
)


def test_straight_through_gradient() -> None:
    u = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    z = StraightThrough.apply(u)
    z.sum().backward()
    assert z.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert u.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]


def test_every_lif_backend_equals_norse_step_by_step() -> None:
    gen = torch.Generator().manual_seed(0)
    current = torch.randn(10, 32, 20, generator=gen) * 1.5
    weights = torch.randn(10, 32, 20, generator=gen)
    results = []
    for backend in ("auto", "torch", "norse"):
        c = current.clone().requires_grad_()
        z = SpikingNeurons(LIFParameters(3.0, 0.8), backend)(c)
        (z * weights).sum().backward()
        results.append((z, c.grad))
    (z1, g1), *others = results
    for z2, g2 in others:
        assert torch.equal(z1, z2) and 0.05 < z1.mean() < 0.95
        assert torch.allclose(g1, g2, atol=1e-5) and g1.abs().sum() > 0


def _lif_run(current: Tensor, tau_mem: float, v_th: float, leaf: Tensor, backend: str) -> tuple[Tensor, Tensor]:
    """Spikes, and the gradient at ``leaf`` of a fixed random readout of them."""
    z = SpikingNeurons(LIFParameters(tau_mem, v_th), backend)(current)
    readout = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad((z * readout).sum(), leaf)
    return z, grad


def test_native_lif_kernel_builds() -> None:
    if os.environ.get("KDLIB_NATIVE") == "0":
        pytest.skip("the kernel is turned off (KDLIB_NATIVE=0)")
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler: the workbook runs the eager LIF loop")
    assert native.kernel() is not None, "a C compiler is on PATH but kdlib/snn/lif_kernel.c did not build"


@pytest.mark.parametrize(("compiler", "message"), [("false", "failed"), ("no-such-cc", "no C compiler found")])
def test_without_the_kernel_the_eager_loop_runs_with_a_warning(compiler: str, message: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", compiler)  # `false` is a compiler whose every build fails
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("KDLIB_NATIVE", raising=False)
    native.kernel.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match=message):
            assert native.kernel() is None
        current = torch.tensor([[0.6], [0.6], [0.6], [1.5]])
        assert SpikingNeurons(LIFParameters(2.0, 1.0))(current).flatten().tolist() == [0, 0, 0, 1]
        assert list(tmp_path.rglob("*.so")) == []  # a failed build leaves nothing a later run would load
    finally:
        native.kernel.cache_clear()


@pytest.mark.parametrize(("shape", "tau_mem", "v_th", "constant"), [
    ((4, 128, 400), 2.0, 1.0, False),  # the default student's layer
    ((16, 64, 400), 2.0, 1.0, True),  # direct encoding: the same current at every step, stored once
    ((3, 2, 4, 7, 5), 2.0, 1.0, False),  # a conv layer, and fewer neurons than one block of the kernel
    ((9, 33, 1001), 3.0, 0.8, False),  # other constants, several blocks and a partial one
])
def test_native_lif_kernel_gives_the_eager_loops_bits(shape: tuple[int, ...], tau_mem: float, v_th: float,
                                                      constant: bool) -> None:
    if not native.usable(torch.zeros(1)):
        pytest.skip("the native kernel is not available here")
    gen = torch.Generator().manual_seed(0)
    leaf = (torch.randn(shape[1:] if constant else shape, generator=gen) * 2).requires_grad_()
    current = leaf.expand(shape) if constant else leaf
    kernel = _lif_run(current, tau_mem, v_th, leaf, "native")
    eager = _lif_run(current, tau_mem, v_th, leaf, "torch")
    assert torch.equal(kernel[0], eager[0]) and 0.05 < kernel[0].mean() < 0.95
    if tau_mem == 2.0:  # keep = gain = 1/2: every product is exact, so the bits cannot depend on FMA use
        assert torch.equal(kernel[1], eager[1])
    else:  # PyTorch fuses add-with-alpha into an FMA where the CPU has one, as the kernel does; allow for CPUs without
        assert torch.allclose(kernel[1], eager[1], rtol=1e-6, atol=1e-7)
    assert kernel[1].abs().sum() > 0


def test_lif_surrogate_gradient_single_step() -> None:
    # one step from rest: v' = I/τ, z = H(v' − θ), dz/dI = (1/τ)·1/(|v' − θ| + 1)²
    current = torch.tensor([[0.5, 2.0, 4.0]], requires_grad=True)
    SpikingNeurons(LIFParameters(2.0, 1.0))(current).sum().backward()
    v = current.detach() / 2.0
    assert torch.allclose(current.grad, 0.5 / ((v - 1.0).abs() + 1.0) ** 2)


def test_neuron_models_by_hand() -> None:
    current = torch.tensor([[0.6], [0.6], [0.6], [1.5]])
    # ste-continuous: v = (1 − 1/τ)·v + I, reset by subtraction (τ = 2): 0.6, 0.9, 1.05→spike→0.05, 1.525→spike
    assert SpikingNeurons(LeakySTEParameters(2.0, 1.0))(current).flatten().tolist() == [0, 0, 1, 1]
    # ste-discontinuous: each step on its own
    assert SpikingNeurons(BinarySTEParameters(1.0))(current).flatten().tolist() == [0, 0, 0, 1]
    # lif (τ = 2): v' = v/2 + I/2: 0.3, 0.45, 0.525, 1.0125→spike
    assert SpikingNeurons(LIFParameters(2.0, 1.0))(current).flatten().tolist() == [0, 0, 0, 1]
    with pytest.raises(TypeError, match="not a neuron model"):
        SpikingNeurons("lif")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend = 'cuda': unknown; choose one of auto, native, torch, norse"):
        SpikingNeurons(LIFParameters(2.0, 1.0), "cuda")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="runs LIF neurons only"):
        SpikingNeurons(BinarySTEParameters(1.0), "norse")


@pytest.mark.parametrize("neuron", ["lif", "ste-continuous", "ste-discontinuous"])
def test_student_interface_and_determinism(neuron: str) -> None:
    cfg = P.quick_section("student", hidden=[30, 20], neuron=neuron, steps=5)
    a, b = build_student(cfg, seed=3), build_student(cfg, seed=3)
    x = torch.rand(4, 1, 28, 28)
    out = a(encode(x, 5, "rate", torch.Generator().manual_seed(0)))
    again = b(encode(x, 5, "rate", torch.Generator().manual_seed(0)))
    assert out.outputs.shape == (5, 4, 10) and out.logits.shape == (4, 10)
    assert [tuple(s.shape) for s in out.spikes] == [(5, 4, 30), (5, 4, 20)]
    assert all(set(s.unique().tolist()) <= {0.0, 1.0} for s in out.spikes)
    assert torch.equal(out.outputs, again.outputs)
    assert not torch.equal(build_student(cfg, seed=4).head.weight, a.head.weight)
    assert a.fan_outs() == [20, 10] and a.input_fan_out() == 30 and a.layer_widths() == [30, 20]


def test_constant_input_is_computed_once_with_the_same_result() -> None:
    net = build_student(P.quick_section("student", hidden=[16, 16], steps=6))
    x = torch.rand(3, 1, 28, 28)
    expanded = encode(x, 6, "direct")
    assert expanded.stride(0) == 0
    a, b = net(expanded), net(expanded.contiguous())
    assert torch.allclose(a.outputs, b.outputs, atol=1e-6)
    assert all(torch.equal(s, t) for s, t in zip(a.spikes, b.spikes, strict=True))


def _cnn(**kw) -> SpikingCNN:
    torch.manual_seed(0)
    return SpikingCNN((1, 28, 28), conv_layers((4, 8)), [16], 10, neuron=LIFParameters(2.0, 1.0), **kw)


def test_cnn_student_shapes_and_exact_fan_outs() -> None:
    net = _cnn()
    out = net(encode(torch.rand(2, 1, 28, 28), 3))
    assert [tuple(s.shape) for s in out.spikes] == [(3, 2, 4, 14, 14), (3, 2, 8, 7, 7), (3, 2, 16)]
    assert net.layer_widths() == [4 * 14 * 14, 8 * 7 * 7, 16]
    fan = net.fan_outs()
    # a spike of layer 0 reaches, in each of the 8 channels of the 3×3 stride-2 convolution, the outputs
    # whose window holds it: counted here by convolving a one-hot map with a kernel of ones
    hot = torch.zeros(14 * 14, 1, 14, 14)
    hot.view(14 * 14, -1)[range(196), range(196)] = 1
    reached = torch.nn.functional.conv2d(hot, torch.ones(1, 1, 3, 3), stride=2, padding=1).flatten(1).sum(1)
    assert fan[0].shape == (1, 14, 14) and torch.equal(fan[0].flatten(), 8 * reached.long())
    assert sorted(set(reached.long().tolist())) == [1, 2, 4]  # not 9: the stride skips, the border cuts
    assert fan[1:] == [16, 10]
    assert net.input_macs() == 4 * int(torch.nn.functional.conv2d(torch.ones(1, 1, 28, 28), torch.ones(1, 1, 5, 5),
                                                                  stride=2, padding=2).sum())


def test_cnn_synaptic_operations_are_counted_neuron_by_neuron(mnist5k: Dataset) -> None:
    net = _cnn().eval()
    ev = evaluate(net, Split(mnist5k.test.x[:64], mnist5k.test.y[:64]), 3, encoding="direct", chunk_size=25)
    with torch.no_grad():  # recount: every spike times the kernel taps of ones it meets in the next layer
        spikes = net(encode(mnist5k.test.x[:64], 3)).spikes
    ones = torch.ones(8, 4, 3, 3)
    synops = float(torch.nn.functional.conv2d(spikes[0].flatten(0, 1), ones, stride=2, padding=1).sum())
    synops += float(spikes[1].sum()) * 16 + float(spikes[2].sum()) * 10
    assert ev.counts.hidden_synops_per_image() == pytest.approx(synops / 64, rel=1e-9)


def test_evaluation_chunks_are_bounded_in_neuron_steps(mnist5k: Dataset) -> None:
    mlp = SpikingMLP(784, (400, 400), 10, neuron=LIFParameters(2.0, 1.0))
    cnn = SpikingCNN((1, 28, 28), conv_layers((16, 32)), [128], 10, neuron=LIFParameters(2.0, 1.0))
    # the MLP keeps the chunks it always had (its outputs do not move); the conv student's are smaller
    assert chunk_size_for(mlp, 4, most=1000) == 1000 and chunk_size_for(mlp, 16) == 250
    assert chunk_size_for(cnn, 4, most=1000) == NEURON_STEPS_PER_CHUNK // (4 * (16 * 196 + 32 * 49 + 128)) == 217
    assert chunk_size_for(cnn, 10**9) == 1
    net = _cnn().eval()
    split = Split(mnist5k.test.x[:90], mnist5k.test.y[:90])
    whole, chunked = (evaluate(net, split, 3, encoding="direct", chunk_size=n, keep_outputs=True) for n in (90, 7))
    assert torch.allclose(whole.outputs, chunked.outputs, atol=1e-5) and whole.accuracy == chunked.accuracy


def test_cnn_batch_norm_folds_into_the_synapses() -> None:
    net = _cnn()
    for norm in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), norm.bias.data.uniform_(-1, 1)
        norm.weight.data.uniform_(0.5, 3)
    net.eval()
    (w0, b0), (w1, b1), (w2, b2) = net.folded_synapses()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        h0 = net.synapses[0](x)
        assert torch.allclose(h0, torch.nn.functional.conv2d(x, w0, b0, stride=2, padding=2), atol=1e-5)
        s0 = (h0 > 0).float()
        h1 = net.synapses[1](s0)
        assert torch.allclose(h1, torch.nn.functional.conv2d(s0, w1, b1, stride=2, padding=1), atol=1e-5)
        s1 = (h1 > 0).float()
        assert torch.allclose(net.synapses[2](s1), s1.flatten(1) @ w2.T + b2, atol=1e-5)


def test_cnn_fires_at_initialisation_and_its_kernel_matches_the_eager_loop(mnist5k: Dataset) -> None:
    x = encode(mnist5k.train.x[:32], 4)
    runs = {}
    for backend in ("native", "torch"):
        if backend == "native" and not native.usable(torch.zeros(1)):
            continue
        net = _cnn(backend=backend)
        out = net(x)
        torch.nn.functional.cross_entropy(out.logits, mnist5k.train.y[:32]).backward()
        runs[backend] = out, [p.grad for p in net.parameters()]
    out, grads = runs["torch"]
    rates = [float(s.detach().mean()) for s in out.spikes]
    assert all(0.03 < r < 0.4 for r in rates), rates  # batch norm's initial scale: not silent, not saturated
    assert all(g is not None and g.abs().sum() > 0 for g in grads)  # every layer learns from the first step
    if "native" in runs:
        assert all(torch.equal(a, b) for a, b in zip(runs["native"][0].spikes, out.spikes, strict=True))
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(runs["native"][1], grads, strict=True))


def test_evaluation_counts_spikes_and_synops(mnist5k: Dataset, tmp_path: Path) -> None:
    cfg = P.quick_section("student", hidden=[20, 10], steps=4, encoding="rate")
    net = build_student(cfg)
    ev = evaluate(net, mnist5k.test, 4, encoding="rate", seed=1, chunk_size=300, keep_outputs=True)
    # recount by hand with the same encoding stream
    gen = torch.Generator().manual_seed(1)
    counts, inputs = torch.zeros(2, dtype=torch.float64), 0.0
    for start in range(0, 1000, 300):
        x_seq = encode(mnist5k.test.x[start:start + 300], 4, "rate", gen)
        with torch.no_grad():
            out = net(x_seq)
        counts += torch.tensor([float(s.sum()) for s in out.spikes], dtype=torch.float64)
        inputs += float(x_seq.sum())
    per_image = (counts / 1000).tolist()
    spikes = ev.counts.spikes_per_image()
    assert spikes["layer0"] == pytest.approx(per_image[0]) and spikes["total"] == pytest.approx(sum(per_image))
    assert ev.counts.synops_per_image() == pytest.approx(per_image[0] * 10 + per_image[1] * 10 + inputs / 1000 * 20)
    assert ev.outputs.shape == (4, 1000, 10) and torch.equal(ev.outputs.mean(0), ev.logits)
    assert ev.accuracy == pytest.approx((ev.logits.argmax(1) == mnist5k.test.y).double().mean().item())

    save_student(tmp_path / "s.pt", net, cfg, CEVariant(loss="ce"), "mnist-5k", 10, {"test_accuracy": ev.accuracy})
    loaded, ckpt = load_student(tmp_path / "s.pt")
    x_seq = encode(mnist5k.test.x[:5], 4, "direct")
    assert torch.equal(loaded(x_seq).outputs, net(x_seq).outputs)
    assert ckpt["variant"] == {"loss": "ce", "student": {}, "per_step": False}


def test_every_spiking_network_declares_the_student_interface() -> None:
    from kdlib.loihi.slayer import build_loihi_student
    from kdlib.snn.conversion import ConvertedMLP
    from kdlib.snn.students import Student

    mlp = build_student(P.quick_section("student"))
    cnn = build_student(P.quick_section("student", arch="cnn", hidden=[16], channels=[4, 8]))
    converted = ConvertedMLP([torch.nn.Linear(784, 8)], torch.nn.Linear(8, 10), scales=[1.0])
    chip = build_loihi_student(P.quick_section("loihi"))
    for net in (mlp, cnn, converted, chip):
        assert isinstance(net, Student), type(net).__name__
        out = net(torch.rand(2, 3, 1, 28, 28))
        assert out.outputs.shape == (2, 3, 10)
        assert [s[0, 0].numel() for s in out.spikes] == net.layer_widths()
        assert len(net.fan_outs()) == len(net.layer_widths()) and net.input_fan_out() > 0
    assert not isinstance(torch.nn.Linear(2, 2), Student)
