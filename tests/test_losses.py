"""Every distillation objective against an independent computation on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlib.core.params import BidirectionalVariant, FeatureKDVariant, KDVariant, RateRegVariant
from kdlib.kd import losses as L
from kdlib.snn.students import SpikingOutput
from kdlib.snn.teachers import ModelOutput

torch.manual_seed(0)
Z_S, Z_T = torch.randn(6, 10), torch.randn(6, 10) * 3
Y = torch.randint(0, 10, (6,))


def _kd_by_hand(z_s: torch.Tensor, z_t: torch.Tensor, tau_t: float, tau_s: float) -> float:
    total = 0.0
    for zs, zt in zip(z_s.tolist(), z_t.tolist(), strict=True):
        pt = [math.exp(v / tau_t) for v in zt]
        ps = [math.exp(v / tau_s) for v in zs]
        pt = [v / sum(pt) for v in pt]
        ps = [v / sum(ps) for v in ps]
        total += sum(a * (math.log(a) - math.log(b)) for a, b in zip(pt, ps, strict=True))
    return tau_t * tau_s * total / len(z_s)


@pytest.mark.parametrize(("tau_t", "tau_s"), [(1.0, 1.0), (4.0, 4.0), (4.0, 1.0), (2.0, 0.5)])
def test_kd_loss_is_the_closed_form(tau_t: float, tau_s: float) -> None:
    assert L.kd_loss(Z_S, Z_T, tau_t, tau_s).item() == pytest.approx(_kd_by_hand(Z_S, Z_T, tau_t, tau_s), rel=1e-5)


def test_kd_gradient_is_hintons() -> None:
    tau = 3.0
    z = Z_S.clone().requires_grad_()
    L.kd_loss(z, Z_T, tau, tau).backward()
    expected = tau * (F.softmax(Z_S / tau, 1) - F.softmax(Z_T / tau, 1)) / len(Z_S)
    assert torch.allclose(z.grad, expected, atol=1e-6)


def _out(steps: int = 4, widths: tuple[int, ...] = (5, 7)) -> SpikingOutput:
    gen = torch.Generator().manual_seed(1)
    spikes = [torch.bernoulli(torch.full((steps, 6, w), 0.3), generator=gen) for w in widths]
    outputs = Z_S.unsqueeze(0) + 0.1 * torch.randn(steps, 6, 10, generator=gen)
    return SpikingOutput(outputs, spikes)


def test_hetero_with_equal_temperatures_is_kd_and_alpha_mixes_ce() -> None:
    out, targets = _out(), ModelOutput(Z_T, [])
    kd = L.Distillation(alpha=0.7, tau_teacher=2.0, tau_student=2.0)(out, Y, targets)[0]
    expected = 0.3 * F.cross_entropy(out.logits, Y) + 0.7 * L.kd_loss(out.logits, Z_T, 2.0, 2.0)
    assert kd.item() == pytest.approx(expected.item(), rel=1e-6)
    ce_only = L.Distillation(alpha=0.0, tau_teacher=2.0, tau_student=0.5)(out, Y, targets)[0]
    assert ce_only.item() == pytest.approx(L.Objective()(out, Y, None)[0].item(), rel=1e-6)


def test_hetero_student_matches_teacher_with_smaller_logits() -> None:
    # the minimiser of KD(z_T, z_S; τ_T, τ_S) is z_S = z_T·τ_S/τ_T (up to a constant): smaller outputs
    assert L.kd_loss(Z_T / 4.0, Z_T, 4.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert L.kd_loss(Z_T, Z_T, 4.0, 1.0).item() > 0.01


def test_attention_map_by_hand() -> None:
    dense = torch.tensor([[1.0, 2.0, 2.0, 0.0]])
    assert torch.allclose(L.attention_map(dense), torch.tensor([[1.0, 4.0, 4.0, 0.0]]) / math.sqrt(33))
    pooled = L.attention_map(dense, width=2)  # squares 1,4 | 4,0 → means 2.5, 2 → normalised
    assert torch.allclose(pooled, torch.tensor([[2.5, 2.0]]) / math.sqrt(2.5**2 + 4))
    conv = torch.ones(2, 3, 4, 4)
    assert torch.allclose(L.attention_map(conv), torch.full((2, 16), 0.25))  # channel sums equal everywhere


def test_attention_distillation_term() -> None:
    out = _out(widths=(4, 4))
    feats = [torch.rand(6, 8), torch.rand(6, 8)]
    obj = L.AttentionDistillation(alpha=0.5, tau_teacher=2.0, tau_student=2.0, beta=3.0, layers=[1])
    loss, parts = obj(out, Y, ModelOutput(Z_T, feats))
    a_s = L.attention_map(out.spikes[1].mean(0))
    a_t = L.attention_map(feats[1], 4)
    assert parts["feature"].item() == pytest.approx((a_s - a_t).norm(dim=1).mean().item(), rel=1e-6)
    kd_part = L.Distillation(0.5, 2.0, 2.0)(out, Y, ModelOutput(Z_T, feats))[0]
    assert loss.item() == pytest.approx(kd_part.item() + 3.0 * parts["feature"].item(), rel=1e-6)


def test_decoder_and_regressor_map_spikes_to_teacher_widths() -> None:
    out = _out(steps=4, widths=(5, 7))
    feats = [torch.rand(6, 12), torch.rand(6, 9)]
    variant = FeatureKDVariant(loss="decoder_kd", alpha=0.5, tau_teacher=2.0, tau_student=2.0, beta=1.0, layers=[0, 1])
    dec = L.build_objective(variant, steps=4, student_widths=[5, 7], teacher_widths=[12, 9])
    assert [tuple(d(s).shape) for d, s in zip(dec.decoders, out.spikes, strict=True)] == [(6, 12), (6, 9)]
    # D(s) = W·(Σ_t w_t s_t) + b with w_t = 1/T at initialisation: the firing rate through a linear layer
    assert torch.allclose(dec.decoders[0](out.spikes[0]), dec.decoders[0].linear(out.spikes[0].mean(0)), atol=1e-6)
    _, parts = dec(out, Y, ModelOutput(Z_T, feats))
    expected = sum(F.mse_loss(d(s), f) for d, s, f in zip(dec.decoders, out.spikes, feats, strict=True))
    assert parts["feature"].item() == pytest.approx(expected.item(), rel=1e-6)

    joint = L.build_objective(variant.model_copy(update={"loss": "joint_kd", "layers": [1]}), 4, [5, 7], [12, 9])
    assert len(joint.regressors) == 1 and joint.regressors[0].linear.weight.shape == (9, 7)
    with pytest.raises(ValueError, match="layers: 2 is not a hidden layer of both student and teacher"):
        L.build_objective(variant.model_copy(update={"layers": [2]}), 4, [5, 7], [12, 9])


def test_bidirectional_trains_the_teacher_only_through_its_own_terms() -> None:
    out = _out()
    variant = BidirectionalVariant(loss="bidirectional_kd", alpha=0.5, tau_teacher=2.0, tau_student=2.0, beta=1.0,
                                   layers=[0], gamma=0.0, teacher_lr=1e-4)
    obj = L.build_objective(variant, 4, [5, 7], [12, 9])
    assert obj.trains_teacher
    z_t = Z_T.clone().requires_grad_()
    feat = torch.rand(6, 12, requires_grad=True)
    obj(out, Y, ModelOutput(z_t, [feat]))[0].backward()
    # with γ = 0 the teacher's logits receive exactly the gradient of its own cross-entropy
    z_ref = Z_T.clone().requires_grad_()
    F.cross_entropy(z_ref, Y).backward()
    assert torch.allclose(z_t.grad, z_ref.grad, atol=1e-7)
    assert feat.grad is None  # the feature target is never pushed towards the student


def test_ce_and_kd_variants_need_no_extra_parameters() -> None:
    assert sum(p.numel() for p in L.build_objective(KDVariant(loss="kd", alpha=0.5, tau_teacher=1.0,
                                                              tau_student=1.0), 4, [5], [9]).parameters()) == 0


def test_rate_regularisation_adds_lambda_times_the_mean_firing_rate() -> None:
    spikes = [torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]]), torch.tensor([[[0.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]]])]
    out = SpikingOutput(torch.randn(2, 1, 10), spikes)  # 4 of 10 neuron-steps fire
    objective = L.build_objective(RateRegVariant(loss="rate_reg", rate_lambda=0.5), 2, [2, 3], [4, 4])
    loss, parts = objective(out, Y[:1], None)
    assert parts["rate"].item() == pytest.approx(0.4)
    assert loss.item() == pytest.approx(F.cross_entropy(out.logits, Y[:1]).item() + 0.5 * 0.4)


def test_the_per_step_objective_averages_the_loss_of_every_running_mean() -> None:
    outputs = torch.randn(3, 6, 10)
    out = SpikingOutput(outputs, [torch.zeros(3, 6, 4)])
    teacher = ModelOutput(Z_T, [])
    variant = KDVariant(loss="kd", alpha=0.7, tau_teacher=3.0, tau_student=2.0, per_step=True)
    objective = L.build_objective(variant, 3, [4], [4])
    assert isinstance(objective, L.PerStep) and objective.uses_teacher and not objective.trains_teacher
    loss, parts = objective(out, Y, teacher)
    final = L.build_objective(variant.model_copy(update={"per_step": False}), 3, [4], [4])
    by_hand = [final(SpikingOutput(outputs[: t + 1], out.spikes), Y, teacher)[0] for t in range(3)]
    assert loss.item() == pytest.approx(sum(v.item() for v in by_hand) / 3)
    assert parts["final"].item() == pytest.approx(final(out, Y, teacher)[0].item())
    for t in range(3):
        running = outputs[: t + 1].mean(0)
        expected = 0.3 * F.cross_entropy(running, Y) + 0.7 * _kd_by_hand(running, Z_T, 3.0, 2.0)
        assert by_hand[t].item() == pytest.approx(expected, rel=1e-5)
