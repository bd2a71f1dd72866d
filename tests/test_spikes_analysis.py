"""Spike and operation accounting, energy models, ANN→SNN conversion, early exit and corruptions."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from kdlib.core import params as P
from kdlib.core import train as training
from kdlib.core.data import Dataset, Split, batches, encode
from kdlib.measure.analysis import (
    CORRUPTIONS,
    accuracy_over_time,
    corrupt_split,
    early_exit,
    early_exit_sweep,
    evaluate,
    running_mean,
)
from kdlib.measure.energy import HOROWITZ_2014, ann_energy_nj, counter_summary, loihi_estimate, snn_energy_nj
from kdlib.measure.spikes import (
    SpikeCounter,
    check_binary,
    linear_macs,
    neuron_updates,
    spike_totals,
    spikes_per_image,
    synaptic_ops,
)
from kdlib.snn.conversion import ConvertedMLP, convert_mlp, integrate_and_fire
from kdlib.snn.students import LIFParameters, SpikingMLP
from kdlib.snn.teachers import MLPTeacher


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The tensors here are tiny: a second thread costs more to wake (and to wait for, on a busy machine)
    than it saves."""
    with training.one_thread():
        yield


# ------------------------------------------------------------------------------------------------ counting
def test_spikes_are_counted_not_their_indices() -> None:
    s = torch.zeros(2, 1, 4)
    s[1, 0, 3] = s[0, 0, 2] = 1.0
    assert spike_totals([s]).tolist() == [2.0]
    assert torch.sum(torch.nonzero(s)).item() != 2  # the trap: it sums indices (1+0+3 + 0+0+2 = 6)


def test_check_binary() -> None:
    for good in (torch.tensor([0.0, 1.0, 1.0]), torch.tensor([True, False]), torch.zeros(3, dtype=torch.int64)):
        check_binary(good)
    for bad in (torch.tensor([0.0, 0.5]), torch.tensor([2.0]), torch.tensor([-1.0]), torch.tensor([float("nan")])):
        with pytest.raises(ValueError, match="0/1"):
            check_binary(bad)
    with pytest.raises(ValueError):
        spikes_per_image([torch.full((2, 1, 3), 0.3)])


def crafted() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """T = 2 steps, B = 2 images; layer 0 has 3 neurons, layer 1 has 2 (spikes indexed [t][b])."""
    s0 = torch.tensor([[[1, 0, 1], [0, 0, 0]],    # t0: image 0 fires neurons 0, 2; image 1 nothing
                       [[0, 1, 1], [1, 0, 0]]],   # t1: image 0 fires 1, 2; image 1 fires 0
                      dtype=torch.float32)        # layer 0: image 0 has 4 spikes, image 1 has 1
    s1 = torch.tensor([[[1, 0], [0, 0]],
                       [[1, 1], [0, 0]]], dtype=torch.float32)  # layer 1: image 0 has 3, image 1 none
    outputs = torch.zeros(2, 2, 10)
    return outputs, torch.ones(2, 2, 4), [s0, s1]


def test_counts_and_energy_by_hand() -> None:
    outputs, _, spikes = crafted()
    # spikes per image: layer 0 (4 + 1)/2 = 2.5, layer 1 (3 + 0)/2 = 1.5
    assert spikes_per_image(spikes) == [2.5, 1.5]
    # fan-outs: layer 0 drives layer 1 (2 synapses), layer 1 drives 10 classes: 2.5·2 + 1.5·10 = 20
    assert synaptic_ops([2.5, 1.5], [2, 10]) == 20.0
    assert synaptic_ops([2.5, 1.5], [2, 10], input_spikes=3.0, input_fan_out=3) == 29.0
    assert neuron_updates([3, 2], steps=2) == 10

    # fed in two chunks of one image each, with a direct input of 4 features into 3 neurons: 4·3 MACs per step
    counter = SpikeCounter([2, 10], input_macs_per_step=12)
    for b in range(2):
        counter.update((outputs[:, b:b + 1], [s[:, b:b + 1] for s in spikes]))
    assert counter.spikes_per_image() == {"layer0": 2.5, "layer1": 1.5, "total": 4.0}
    assert counter.per_image()["total"].tolist() == [7.0, 1.0]
    rates = counter.firing_rates()
    # neuron 0 of layer 0 fires twice in 2 images × 2 steps: 0.5; then 1/4 and 2/4; layer 1: 2/4, 1/4
    assert rates["rate"].tolist() == [0.5, 0.25, 0.5, 0.5, 0.25]
    summary = counter_summary(counter)
    assert summary["synops"] == 20.0 and summary["neuron_updates"] == 10 and summary["input_macs"] == 24
    assert summary["firing_rate"] == pytest.approx(0.4)  # 4 spikes / 10 updates
    # 45 nm: 20 adds · 0.9 pJ + 24 MACs · 4.6 pJ = 18 + 110.4 = 128.4 pJ
    assert summary["energy_45nm_nj"] == pytest.approx(0.1284)
    # Loihi: 20·23.6 + 4 active·81 + 6 inactive·52 + 4 spikes·1.7 = 472 + 324 + 312 + 6.8 = 1114.8 pJ
    assert summary["energy_loihi_nj"] == pytest.approx(1.1148)
    # time: 20·3.5 + 4·8.4 + 6·5.3 = 70 + 33.6 + 31.8 = 135.4 ns
    assert summary["latency_loihi_us"] == pytest.approx(0.1354)


def test_counter_with_rate_coded_input() -> None:
    outputs, inputs, spikes = crafted()
    counter = SpikeCounter([2, 10], input_fan_out=3)
    counter.update((outputs, spikes), input_spikes=inputs)
    # 16 input spikes over 2 images = 8 per image, each driving 3 synapses: 20 + 24
    assert counter.synops_per_image() == 44.0 and counter.input_macs_per_image() == 0
    with pytest.raises(ValueError, match="same number of steps"):
        counter.update((outputs[:1], [s[:1] for s in spikes]))


def test_loihi_estimate_by_hand() -> None:
    est = loihi_estimate(synops=1000, neuron_updates=500, spikes=100)
    assert est.synops_nj == pytest.approx(23.6) and est.spikes_nj == pytest.approx(0.17)
    assert est.neurons_nj == pytest.approx(8.1 + 20.8)  # 100 active · 81 pJ + 400 inactive · 52 pJ
    assert est.total_nj == pytest.approx(52.67)
    assert est.latency_us == pytest.approx(3.5 + 0.84 + 2.12)  # 1000·3.5 + 100·8.4 + 400·5.3 ns


def test_ann_macs_and_energy() -> None:
    # 784·1200 + 1200·1200 + 1200·10
    assert linear_macs(MLPTeacher(784, (1200, 1200), 10, dropout=0.2)) == 2_392_800
    assert ann_energy_nj(2_392_800) == pytest.approx(2_392_800 * 4.6e-3)
    assert snn_energy_nj(1000, 10) == pytest.approx((1000 * HOROWITZ_2014.add_pj + 10 * HOROWITZ_2014.mac_pj) / 1e3)


def test_tiny_converted_network_by_hand() -> None:
    synapse, head = nn.Linear(2, 2), nn.Linear(2, 3)
    with torch.no_grad():
        synapse.weight.copy_(torch.eye(2)), synapse.bias.zero_()
        head.weight.fill_(1.0), head.bias.copy_(torch.tensor([0.0, 0.5, -1.0]))
    net = ConvertedMLP([synapse], head, scales=[1.0])
    out = net(encode(torch.tensor([[0.5, 0.25]]), 4))
    # currents 0.5 and 0.25: neuron 0 fires at steps 2 and 4, neuron 1 at step 4
    assert out.spikes[0][:, 0].tolist() == [[0, 0], [1, 0], [0, 0], [1, 1]]
    assert out.outputs[:, 0, 0].tolist() == [0, 1, 0, 2]  # the head's current: spikes · 1 + bias
    counter = SpikeCounter.for_model(net)
    counter.update(out)
    s = counter_summary(counter)
    # 3 spikes · 3 classes = 9 synops; 2 inputs · 2 neurons · 4 steps = 16 MACs; 2 neurons · 4 steps
    assert (s["spikes_total"], s["synops"], s["input_macs"], s["neuron_updates"]) == (3, 9, 16, 8)


# ---------------------------------------------------------------------------------------------- conversion
def test_integrate_and_fire_resets_by_subtraction() -> None:
    current = torch.tensor([0.25, 0.75, -0.5, 1.5]).expand(8, 4)
    spikes = integrate_and_fire(current)
    # 0.25: v reaches 1 every 4 steps; 0.75: the surplus is kept, 6 spikes in 8 steps; never below 0; 1.5: every step
    assert spikes.sum(0).tolist() == [2, 6, 0, 8]
    assert spikes[:, 0].tolist() == [0, 0, 0, 1, 0, 0, 0, 1]


@pytest.fixture(scope="module")
def small_teacher(mnist5k: Dataset) -> tuple[MLPTeacher, float]:
    """A 784-64-10 teacher trained for 2 epochs on the real mnist-5k digits, and its test accuracy."""
    torch.manual_seed(0)
    model = MLPTeacher(784, (64,), 10, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        for b in batches(mnist5k.train, 64, shuffle=True, generator=gen):
            loss = nn.functional.cross_entropy(model(b.x).logits, b.y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(mnist5k.test.x).logits.argmax(1) == mnist5k.test.y).float().mean().item()
    return model, acc


def test_conversion_approaches_the_teacher(small_teacher: tuple[MLPTeacher, float], mnist5k: Dataset) -> None:
    teacher, ann_acc = small_teacher
    before = [p.clone() for p in teacher.parameters()]
    net = convert_mlp(teacher.train(), mnist5k.train.x, percentile=99.9)
    assert teacher.training and all(torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))
    teacher.eval()
    assert ann_acc > 0.85

    table = accuracy_over_time(net, mnist5k.test, (1, 2, 4, 8, 16, 32, 64, 128, 256), chunk_size=100).set_index("steps")
    acc = table["accuracy"]
    assert all(abs(acc[t] - ann_acc) <= 0.02 for t in (128, 256))
    assert acc[1] < ann_acc - 0.2 and acc[2] < ann_acc - 0.1
    assert acc[1] < acc[2] < acc[4] < acc[8] and acc.loc[64:].min() > acc[4]
    assert table["spikes_per_image"].is_monotonic_increasing and acc.index.tolist()[-1] == 256

    # the same accuracy as a run of its own at T = 8 (the model is causal)
    logits = net(encode(mnist5k.test.x, 8)).logits
    assert (logits.argmax(1) == mnist5k.test.y).float().mean().item() == pytest.approx(acc[8])

    # first layer: constant current a/λ, so the spike count is floor(T·a/λ) (clipped at T): error < 1/T
    x = mnist5k.test.x[:200]
    rates = net(encode(x, 64)).spikes[0].mean(0)
    target = (teacher(x).features[0] / net.scales[0]).clamp(max=1.0)
    assert (rates - target).abs().max().item() <= 1 / 64 + 1e-5


def test_accuracy_over_time_counts_chunks_consistently(small_teacher: tuple[MLPTeacher, float],
                                                       mnist5k: Dataset) -> None:
    net = convert_mlp(small_teacher[0], mnist5k.train.x[:1000])
    split = Split(mnist5k.test.x[:300], mnist5k.test.y[:300])
    whole = accuracy_over_time(net, split, [4, 1, 2], chunk_size=300)
    chunked = accuracy_over_time(net, split, [1, 2, 4], chunk_size=70)
    assert whole["steps"].tolist() == [1, 2, 4]
    assert torch.allclose(torch.tensor(whole.to_numpy()), torch.tensor(chunked.to_numpy()))
    counter = SpikeCounter.for_model(net)
    counter.update(net(encode(split.x, 4)))
    assert whole["spikes_per_image"].iloc[-1] == pytest.approx(counter.spikes_per_image()["total"])
    ev = evaluate(net, split, 4, encoding="direct", chunk_size=70, keep_outputs=True)
    assert ev.outputs.shape == (4, 300, 10) and ev.accuracy == pytest.approx(whole["accuracy"].iloc[-1])
    assert ev.counts.spikes_per_image()["total"] == pytest.approx(counter.spikes_per_image()["total"])


def test_student_with_rate_coded_input(mnist5k: Dataset) -> None:
    torch.manual_seed(0)
    student = SpikingMLP(784, (16, 8), 10, neuron=LIFParameters(2.0, 0.2)).eval()
    split = Split(mnist5k.test.x[:50], mnist5k.test.y[:50])
    table = accuracy_over_time(student, split, [1, 3], encoding="rate", chunk_size=50, seed=3)
    x_seq = encode(split.x, 3, "rate", torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = student(x_seq)
    counter = SpikeCounter.for_model(student, "rate")
    counter.update(out, input_spikes=x_seq)
    spikes = counter.spikes_per_image()
    assert table["spikes_per_image"].iloc[-1] == pytest.approx(spikes["total"]) and spikes["total"] > 0
    assert table["accuracy"].iloc[-1] == pytest.approx((out.logits.argmax(1) == split.y).float().mean().item())
    # hidden spikes drive 8 and 10 synapses, every input spike the 16 neurons of the first layer
    expected = spikes["layer0"] * 8 + spikes["layer1"] * 10 + x_seq.sum().item() / 50 * 16
    assert counter.synops_per_image() == pytest.approx(expected) and counter.input_macs_per_image() == 0


# ---------------------------------------------------------------------------------------------- early exit
def test_early_exit_by_hand() -> None:
    # 3 steps, 3 images, 2 classes; softmax([2, 0]) = 0.881, softmax([0, 0]) = 0.5
    outputs = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
                            [[2.0, 0.0], [0.0, 4.0], [0.0, 0.0]],
                            [[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    assert torch.equal(running_mean(outputs)[1, 1], torch.tensor([0.0, 2.0]))
    steps, preds = early_exit(outputs, threshold=0.85)
    # image 0 is sure at step 1; image 1 once the mean of steps 1-2 is [0, 2]; image 2 never, so T = 3
    assert steps.tolist() == [1, 2, 3] and preds.tolist() == [0, 1, 0]
    sweep = early_exit_sweep(outputs, torch.tensor([0, 1, 1]), [0.0, 0.85, 1.01])
    assert sweep["mean_steps"].tolist() == [1.0, 2.0, 3.0]  # (1 + 2 + 3) / 3 = 2 at 0.85
    # at 0 every image stops after step 1, where image 1's output [0, 0] picks class 0
    assert sweep["accuracy"].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3])


# --------------------------------------------------------------------------------------------- corruptions
@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruptions(name: str, mnist5k: Dataset) -> None:
    x = mnist5k.test.x[:64]
    corruption = CORRUPTIONS[name]
    assert corruption.levels[0] == 0.0
    assert torch.equal(corruption(x, 0.0, torch.Generator().manual_seed(0)), x)
    level = corruption.levels[-1]
    a, b, c = (corruption(x, level, torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    split = corrupt_split(mnist5k.test, name, level, seed=1)
    assert torch.equal(split.x, corruption(mnist5k.test.x, level, torch.Generator().manual_seed(1)))
    assert torch.equal(split.y, mnist5k.test.y)


def test_salt_and_pepper_rate() -> None:
    gray = torch.full((200, 1, 28, 28), 0.5)
    out = CORRUPTIONS["salt_and_pepper"](gray, 0.2, torch.Generator().manual_seed(0))
    # a fifth of the pixels change: half of them to 0, half to 1
    assert (out == 0).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert (out == 1).float().mean().item() == pytest.approx(0.1, abs=0.005)


def test_pareto_front_by_hand() -> None:
    from kdlib.measure.analysis import pareto_front

    frame = pd.DataFrame({"energy": [10, 5, 20, 5, 30], "accuracy": [0.90, 0.80, 0.95, 0.70, 0.94]})
    # (5, .80) beats (5, .70); (10, .90) and (20, .95) improve on cheaper points; (30, .94) does not
    assert pareto_front(frame, "energy", "accuracy").tolist() == [True, True, True, False, False]


def test_the_evaluation_of_a_cnn_counts_its_first_convolution(mnist5k: Dataset) -> None:
    from kdlib.snn.students import build_student

    net = build_student(P.quick_section("student", arch="cnn", hidden=[16], channels=[4, 8], steps=2))
    ev = evaluate(net, Split(mnist5k.test.x[:20], mnist5k.test.y[:20]), 2, encoding="direct")
    assert ev.counts.spikes_per_image()["total"] > 0 and ev.outputs is None
    assert ev.counts.input_macs_per_image() == 2 * net.input_macs()
    assert counter_summary(ev.counts)["synops"] > 0


# ------------------------------------------------------------------------------------------ the stage, assembled
def test_spikes_metrics_by_hand() -> None:
    import pandas as pd

    from kdlib.measure.study import SpikesMetrics, spikes_metrics

    costs = pd.DataFrame({"variant": ["kd", "kd", "hetero_kd", "scratch"], "seed": [0, 1, 0, 0], "steps": 4,
                          "accuracy": [0.90, 0.92, 0.89, 0.80], "spikes_total": [100.0, 300.0, 150.0, 50.0],
                          "energy_45nm_nj": [10.0, 30.0, 5.0, 1.0], "energy_loihi_nj": [2.0, 4.0, 1.0, 0.5]})
    curves = pd.DataFrame({"model": ["kd", "kd", "kd", "kd"], "seed": [0, 0, 1, 1], "steps": [2, 4, 2, 4],
                           "accuracy": [0.85, 0.90, 0.86, 0.92]})
    conversion = pd.DataFrame({"steps": [1, 8, 32], "accuracy": [0.2, 0.905, 0.95]})
    exits = pd.DataFrame({"variant": "kd", "seed": [0, 0, 1, 1], "threshold": [0.5, 0.9, 0.5, 0.9],
                          "accuracy": [0.80, 0.9095, 0.84, 0.9105], "mean_steps": [1.0, 2.0, 1.5, 3.0]})
    teacher_row = {"energy_45nm_nj": 123.0}
    metrics = spikes_metrics("mnist", costs, curves, conversion, exits, teacher_row, 0.97, 0.001)
    assert set(metrics) == set(SpikesMetrics.__annotations__)
    # kd is best (0.91 on average, T = 4); the conversion first reaches 0.91 at 32 steps: 8× kd's T
    assert (metrics["best_variant"], metrics["best_steps"]) == ("kd", 4)
    assert metrics["best_accuracy"] == pytest.approx(0.91)
    assert (metrics["conversion_steps_to_match_best"], metrics["conversion_latency_ratio"]) == (32, 8.0)
    assert metrics["conversion_accuracy_at_max_steps"] == 0.95
    # threshold 0.9 keeps 0.91 on average, within 0.1 points of the full-T 0.91, at 2.5 steps on average
    assert metrics["early_exit_mean_steps_within_0.1_points"] == pytest.approx(2.5)
    assert (metrics["best_energy_45nm_nj"], metrics["best_energy_loihi_nj"]) == (20.0, 3.0)
    assert metrics["hetero_vs_kd_spike_reduction"] == pytest.approx(1 - 150 / 200)
    assert (metrics["teacher_energy_45nm_nj"], metrics["teacher_int8_accuracy"]) == (123.0, 0.97)

    # no conversion reaches it, no threshold keeps the accuracy, no pair of hetero_kd and kd
    none = spikes_metrics("mnist", costs[costs.variant != "hetero_kd"], curves, conversion.iloc[:1],
                          exits.assign(accuracy=0.5), teacher_row, 0.97, 0.0)
    assert none["conversion_steps_to_match_best"] is None and none["conversion_latency_ratio"] is None
    assert math.isnan(none["early_exit_mean_steps_within_0.1_points"])
    assert none["hetero_vs_kd_spike_reduction"] is None


def test_the_spike_analysis_of_a_dataset_assembled(small_teacher: tuple[MLPTeacher, float], mnist5k: Dataset) -> None:
    """The stage's sections over three students of two variants, as the notebook strings them together."""
    from kdlib.measure import energy as E
    from kdlib.measure import study as S

    teacher, _ = small_teacher
    test = Split(mnist5k.test.x[:200], mnist5k.test.y[:200])
    students = []
    for variant, seed in (("hetero_kd", 0), ("kd", 0), ("kd", 1)):
        torch.manual_seed(seed)
        model = SpikingMLP(784, (24, 16), 10, neuron=LIFParameters(2.0, 0.5)).eval()
        students.append(S.StudentRun(variant, seed, model, steps=3, encoding="direct"))
    cfg = P.quick_section("spikes", max_steps=4, conversion_steps=[1, 4], calibration_images=200)

    curves, conversion = S.accuracy_curves(students, teacher, mnist5k.train.x[:200], test, cfg)
    assert len(curves) == 3 * 4 + 2 and conversion.model.unique().tolist() == ["conversion"]
    costs, rates = S.spike_costs(students, test, curves)
    for s, (_, row) in zip(students, costs.iterrows(), strict=True):
        at_t = curves[(curves.model == s.variant) & (curves.seed == s.seed) & (curves.steps == 3)].accuracy.item()
        assert s.accuracy == row.accuracy == at_t and s.outputs.shape == (3, 200, 10)
        assert row.spikes_total == pytest.approx(s.counts.spikes_per_image()["total"])
    assert rates.groupby("variant").size().to_dict() == {"hetero_kd": 40, "kd": 40}  # the first seed's neurons only
    first = S.first_seeds(students)
    assert [(s.variant, s.seed) for s in first.values()] == [("kd", 0), ("hetero_kd", 0)]

    teacher_row = S.teacher_costs(teacher, 0.9)
    assert teacher_row["input_macs"] == 784 * 64 + 64 * 10
    conventions = S.energy_conventions(students, E.ann_counts(teacher, test.x), E.InputStatistics.of(test.x), 0.9,
                                       0.8, "mnist-5k")
    assert conventions.model.unique().tolist() == ["ANN teacher (FP32)", "ANN teacher (INT8)", "hetero_kd", "kd"]
    assert set(conventions.dataset) == {"mnist-5k"}
    assert conventions[conventions.model == "kd"].seed.unique().tolist() == [0, 1]
    energy = pd.concat([costs, pd.DataFrame([teacher_row])], ignore_index=True)
    fronts = S.pareto_fronts(energy)
    assert fronts["energy_45nm_nj"].energy_45nm_nj.is_monotonic_increasing
    assert "ANN teacher" not in set(fronts["energy_loihi_nj"].variant)  # no Loihi figure for the teacher

    checks = S.counter_check(first, test.x[:50])
    assert checks.index.tolist() == ["kd", "hetero_kd"] and checks.synops_difference.max() <= 0.01
    exits = S.early_exits(students, test.y, [0.5, 0.9])
    assert len(exits) == 3 * 2 and set(exits.full_steps) == {3}
    noise = S.noise_robustness(teacher, first, test, seed=0)
    levels = sum(len(c.levels) for c in CORRUPTIONS.values())
    assert len(noise) == levels * 3 and noise.model.unique().tolist() == ["ANN teacher", "kd", "hetero_kd"]

    metrics = S.spikes_metrics("mnist-5k", costs, curves, conversion, exits, teacher_row, 0.8,
                               float(checks[["synops_difference", "macs_difference"]].max().max()))
    assert set(metrics) == set(S.SpikesMetrics.__annotations__) and metrics["hetero_vs_kd_spike_reduction"] is not None


def test_load_students_reads_every_checkpoint_or_says_what_to_run(tmp_path: Path) -> None:
    from kdlib.core.layout import student_path
    from kdlib.measure.study import load_students
    from kdlib.snn.students import build_student, save_student

    with pytest.raises(FileNotFoundError, match="run the distillation stage first"):
        load_students(tmp_path / "results" / "distill" / "mnist-5k")
    cfg = P.quick_section("student")
    for variant, seed in (("kd", 1), ("kd", 0), ("scratch", 0)):
        save_student(student_path(tmp_path, "mnist-5k", variant, seed), build_student(cfg, seed=seed), cfg,
                     P.quick().variants[variant], "mnist-5k", 10, {"test_accuracy": 0.5})
    students = load_students(tmp_path / "results" / "distill" / "mnist-5k")
    assert [(s.variant, s.seed, s.steps, s.encoding) for s in students] == [
        ("kd", 0, cfg.steps, cfg.encoding), ("kd", 1, cfg.steps, cfg.encoding), ("scratch", 0, cfg.steps, cfg.encoding)]
    assert students[0].accuracy is None and students[0].counts is None
