"""Tests for :mod:`kdlib.loihi.slayer`, :mod:`kdlib.loihi.deploy` and :mod:`kdlib.loihi.nir_export`: Lava runs the
exported student bit-exactly, image after image; the energy model; the NIR round trip; training the Loihi student
with a distillation objective."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdlib.core import params as P
from kdlib.core.data import Dataset, Split
from kdlib.core.params import KDVariant
from kdlib.kd.distill import distill
from kdlib.kd.losses import build_objective
from kdlib.loihi import deploy, nir_export, slayer, study
from kdlib.measure.energy import loihi_estimate
from kdlib.snn.students import LeakySTEParameters, LIFParameters, SpikingMLP, load_student
from kdlib.snn.teachers import build_teacher, train_teacher

pytest.importorskip("lava.lib.dl.slayer")

# a CUBA neuron for hand-built test networks (SLAYER's own surrogate-gradient defaults)
CUBA = {"threshold": 1.25, "current_decay": 1.0, "voltage_decay": 0.1, "tau_grad": 1.0, "scale_grad": 1.0,
        "logit_scale": 0.5}


def _tiny_student(hidden: tuple[int, ...] = (8, 6)) -> slayer.LoihiMLP:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = slayer.LoihiMLP(16, hidden, 4, **CUBA)
        with torch.no_grad():
            for block in net.blocks:
                block.synapse.weight.mul_(4.0)  # enough drive for every layer to spike
    return net


def _random_chunks(images: list[int], steps: int, features: int = 16) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.bernoulli(torch.full((steps, n, features), 0.3), generator=gen) for n in images]


def test_lava_stream_matches_pytorch_fixed_point(tmp_path: Path) -> None:
    net, steps = _tiny_student(), 6
    chunks = _random_chunks([5, 3], steps)  # two Lava runs, several images each, reset between images
    expected = deploy.run_torch(net, chunks)
    assert (expected.layers.sum(0) > 0).all() and expected.outputs.sum() > 0

    run = deploy.run_lava(net.export_hdf5(tmp_path / "tiny.net"), chunks, total=len(chunks))

    np.testing.assert_array_equal(run.counts.outputs, expected.outputs)
    np.testing.assert_array_equal(run.counts.layers, expected.layers)
    np.testing.assert_array_equal(run.counts.inputs, expected.inputs)
    depth = len(net.blocks)
    assert run.steps == (5 * steps + depth) + (3 * steps + depth)
    frame = deploy.compare(np.zeros(8, dtype=int), run.counts, expected)
    assert frame.same_prediction.all() and frame.same_output_counts.all() and frame.same_layer_spikes.all()

    trains = deploy.lava_spike_trains(tmp_path / "tiny.net", chunks[0])  # step by step, every layer
    with torch.no_grad():
        reference = net(chunks[0]).spikes
    for got, want in zip(trains, reference, strict=True):
        np.testing.assert_array_equal(got, want.numpy())


def test_spike_chunks_are_reproducible() -> None:
    split = Split(torch.rand(7, 1, 28, 28), torch.zeros(7, dtype=torch.long))
    first, second = list(deploy.spike_chunks(split, 3, 4, seed=2)), list(deploy.spike_chunks(split, 3, 4, seed=2))
    assert [c.shape[1] for c in first] == [4, 3]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_operation_counts_and_loihi_energy_by_hand() -> None:
    net = _tiny_student()  # 16 -> 8 -> 6 -> 4
    counts = deploy.ImageSpikes(outputs=np.array([[3, 1, 3, 0], [0, 2, 1, 0]]),
                                layers=np.array([[10, 5, 7], [4, 2, 3]]), inputs=np.array([20, 30]))
    synops = counts.synops(net)
    assert synops.tolist() == [20 * 8 + 10 * 6 + 5 * 4 + 7 * 0, 30 * 8 + 4 * 6 + 2 * 4 + 3 * 0]
    assert counts.neuron_updates(net, steps=6) == (8 + 6 + 4) * 6
    assert counts.ties().tolist() == [True, False] and counts.predictions().tolist() == [0, 1]

    # per image, as the notebook does it: Davies et al. 2018 through kdlib.measure.spikes
    energy = loihi_estimate(synops, counts.neuron_updates(net, 6), counts.layers.sum(1))
    active, inactive = np.array([22, 9]), 108 - np.array([22, 9])
    np.testing.assert_allclose(energy.synops_nj, synops * 23.6e-3)
    np.testing.assert_allclose(energy.neurons_nj, (active * 81 + inactive * 52) * 1e-3)
    np.testing.assert_allclose(energy.spikes_nj, active * 1.7e-3)
    np.testing.assert_allclose(energy.total_nj, energy.synops_nj + energy.neurons_nj + energy.spikes_nj)
    np.testing.assert_allclose(energy.latency_us, (synops * 3.5 + active * 8.4 + inactive * 5.3) * 1e-3)


def test_nir_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    student = SpikingMLP(784, (12, 10), 10, neuron=LIFParameters(3.0, 0.8))
    graph = nir_export.export_nir(student, tmp_path / "student.nir")
    back = nir_export.read_nir(tmp_path / "student.nir")

    assert nir_export.nir_differences(graph, back) == []
    assert [type(back.nodes[k]).__name__ for k in ("0", "1", "2", "3", "4")] == ["Affine", "LIF", "Affine", "LIF",
                                                                               "Affine"]
    np.testing.assert_array_equal(back.nodes["2"].weight, student.synapses[1].weight.detach().numpy())
    np.testing.assert_allclose(back.nodes["1"].tau, 3.0 * nir_export.DT)  # seconds, for a step of DT
    assert back.metadata["dt"] == nir_export.DT
    x_seq = torch.bernoulli(torch.full((6, 3, 1, 28, 28), 0.3))
    outputs, _ = nir_export.replay_nir(back, x_seq)
    torch.testing.assert_close(outputs, student(x_seq).outputs.detach())
    with pytest.raises(ValueError, match="lif"):
        ste = SpikingMLP(784, (4,), 10, neuron=LeakySTEParameters(2.0, 1.0))
        nir_export.export_nir(ste, tmp_path / "ste.nir")


def test_snntorch_and_spikingjelly_read_the_nir_file_as_the_student_computes(mnist5k: Dataset, tmp_path: Path) -> None:
    """The file, read back by norse, snnTorch 1.0 and SpikingJelly 2.0, predicts every test image's class and
    fires every hidden layer's spikes as the student does (tau in seconds, a step of DT)."""
    torch.manual_seed(1)
    student = SpikingMLP(784, (48, 32), 10, neuron=LIFParameters(2.0, 1.0)).eval()
    with torch.no_grad():  # enough drive that the hidden layers fire often, but not always
        student.synapses[0].weight.mul_(8.0)
        student.synapses[1].weight.mul_(6.0)
    nir_export.export_nir(student, tmp_path / "student.nir")
    graph = nir_export.read_nir(tmp_path / "student.nir")
    x = mnist5k.test.x[:500]
    with torch.no_grad():
        rates = [s.mean().item() for s in student(x.flatten(1).unsqueeze(0).expand(4, -1, -1)).spikes]
    assert all(0.05 < r < 0.6 for r in rates), rates
    agreement = nir_export.importer_agreement(graph, student, x, steps=4, chunk=200)
    assert set(agreement) == set(nir_export.IMPORTERS)
    for importer, found in agreement.items():
        assert found["images"] == 500 and found["same_class"] == 1.0 and found["same_spike_counts"] == 1.0, importer
        assert found["max_readout_difference"] < 1e-4, importer
    with pytest.raises(ValueError, match="choose one of norse, snntorch, spikingjelly"):
        nir_export.replay_nir(graph, x[:2].unsqueeze(0), "lava")


def test_training_with_a_distillation_objective_lowers_the_loss(mnist5k: Dataset) -> None:
    def head(split: Split, n: int) -> Split:
        return Split(split.x[:n], split.y[:n])

    data = Dataset("mnist-5k", mnist5k.classes, head(mnist5k.train, 400), head(mnist5k.val, 100),
                   head(mnist5k.test, 100))
    teacher_cfg = P.quick_section("teacher", hidden=[32], epochs=1, batch_size=50, lr=3e-3)
    teacher = build_teacher(teacher_cfg)
    train_teacher(teacher, data, teacher_cfg, device=torch.device("cpu"))
    cfg = P.quick_section("loihi", hidden=[32], steps=4, epochs=3, batch_size=50, max_shift=1)
    net = slayer.build_loihi_student(cfg, seed=cfg.seed)
    variant = KDVariant(loss="kd", alpha=0.9, tau_teacher=4.0, tau_student=1.0)
    objective = build_objective(variant, cfg.steps, net.hidden_widths(), teacher.hidden_widths())

    result = distill(net, objective, data, cfg, seed=cfg.seed, teacher=teacher, device=torch.device("cpu"))

    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.best_val_accuracy > 0.2  # well above chance after three short epochs


def test_an_untrained_student_exports_and_runs_in_lava(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = slayer.LoihiMLP(16, (8,), 4, **CUBA)  # never run forward before the export
    path = net.export_hdf5(tmp_path / "fresh.net")
    chunks = [(torch.rand(3, 5, 16) < 0.5).float()]
    assert np.array_equal(deploy.run_lava(path, chunks).counts.outputs, deploy.run_torch(net, chunks).outputs)


# ------------------------------------------------------------------------------------------ the stage, assembled
def _stage2_students(root: Path) -> Path:
    """A dataset's folder of stage 2 with a LIF student (kd) and a straight-through one, untrained but driven hard
    enough to fire, each with its stage-2 metrics; scratch is not trained."""
    from kdlib.core.io import write_json
    from kdlib.core.layout import student_path
    from kdlib.snn.students import build_student, save_student

    lif = P.quick_section("student", hidden=[24, 16], steps=3)
    ste = P.quick_section("student", hidden=[24, 16], steps=3, neuron="ste-discontinuous", encoding="rate")
    for variant, cfg in (("kd", lif), ("ste_discontinuous", ste)):
        student = build_student(cfg, seed=0)
        with torch.no_grad():
            student.synapses[0].weight.mul_(8.0)
            student.synapses[1].weight.mul_(6.0)
        for seed in (0, 1):
            save_student(student_path(root, "mnist-5k", variant, seed), student, cfg, P.quick().variants["kd"],
                         "mnist-5k", 10, {"test_accuracy": [0.25, 0.26][seed], "val_accuracy": [0.2, 0.21][seed]})
        write_json(student_path(root, "mnist-5k", variant, 0).parent.parent / "metrics.json",
                   {"seeds": {"0": {"val_accuracy": 0.2}, "1": {"val_accuracy": 0.21}}})
    return student_path(root, "mnist-5k", "kd", 0).parent.parent.parent


def test_the_loihi_stage_deploys_refuses_and_writes_its_contract(mnist5k: Dataset, tmp_path: Path) -> None:
    """The stage's decisions, tables and metrics as the notebook strings them together, on one deployable student
    of stage 2 and two that are not: the metrics have the keys of LoihiMetrics, deployed.csv its columns."""
    from kdlib.loihi import fixed_point as FP

    students_dir = _stage2_students(tmp_path)
    val, test = Split(mnist5k.val.x[:100], mnist5k.val.y[:100]), Split(mnist5k.test.x[:30], mnist5k.test.y[:30])
    deployments, refused, chosen = study.deploy_students(students_dir, ["scratch", "ste_discontinuous", "kd"], val,
                                                          test, input_bits=[4], calibration_images=50)
    assert list(deployments) == ["kd"] and list(refused) == ["scratch", "ste_discontinuous"]
    assert "not trained" in refused["scratch"] and "straight-through" in refused["ste_discontinuous"]
    assert chosen["kd"] == {"seed": 1, "float_test_accuracy": 0.26, "float_val_accuracy": 0.21}  # the best val seed

    dep = deployments["kd"]
    fixed = study.fixed_point_table(deployments, chosen, test.y.numpy())
    assert fixed.loc["kd", "fixed-point val accuracy"] == dep.val_accuracy and fixed.loc["kd", "seed"] == 1
    net_file = FP.export_netx(dep.net, tmp_path / "models" / "kd.net")
    lava_runs = {"kd": deploy.run_lava(net_file, deploy.message_chunks(dep.net, test.x, 15), total=2,
                                       message_bits=dep.net.input_bits, readout=True)}
    frames = {"kd": deploy.compare_readout(test.y, lava_runs["kd"], dep.fixed, dep.floating)}
    assert frames["kd"].same_prediction.all() and frames["kd"].same_layer_spikes.all()
    deployed = study.deployed_table(fixed, study.lava_table(frames, lava_runs),
                                     study.energy_table(lava_runs, deployments, frames), refused)
    assert tuple(deployed.reset_index().columns) == study.DEPLOYED_CSV_COLUMNS
    assert deployed.index.tolist() == ["kd", "scratch", "ste_discontinuous"]
    assert deployed["not deployed"].isna().tolist() == [True, False, False]
    rows = study.per_image(frames["kd"], lava_runs["kd"].counts, dep.net)
    assert rows.synops.mean() == pytest.approx(deployed.loc["kd", "SynOps"])

    nir = nir_export.deployed_agreement(students_dir, {"kd": (1, dep.net.steps)}, tmp_path / "models", test.x)
    assert set(nir) == {("kd", importer) for importer in nir_export.IMPORTERS}
    assert all(row["same_class"] == 1.0 for row in nir.values()) and (tmp_path / "models" / "kd.nir").is_file()
    student, _ = load_student(students_dir / "kd" / "students" / "seed1.pt")
    trip = nir_export.round_trip(student, tmp_path / "student.nir", test.x[:4], 3, "direct")
    assert trip.differences == [] and trip.replay_error < 1e-5
    assert nir_export.node_table(trip.back).type.value_counts().to_dict() == {"Affine": 3, "LIF": 2, "Input": 1,
                                                                              "Output": 1}

    metrics = study.loihi_metrics("mnist-5k", "kd", dep, lava_runs, frames["kd"], deployed, refused, seed=1,
                                   teacher_test_accuracy=0.9, teacher_macs=1000, nir=nir,
                                   nir_differences=len(trip.differences), nir_replay_error=trip.replay_error)
    assert set(metrics) == study.LoihiMetrics.__required_keys__
    assert set(metrics["deployed"]["kd"]) == set(study.DeployedMetrics.__annotations__)
    assert set(metrics["nir"]["kd"]) == set(nir_export.IMPORTERS)
    assert set(metrics["nir"]["kd"]["norse"]) == set(study.ImporterAgreement.__annotations__)
    assert (metrics["images"], metrics["lava_images"], metrics["seed"], metrics["refused"]) == (30, 30, 1, refused)
    assert metrics["deployed"]["kd"]["lava_accuracy"] == metrics["lava_accuracy"]
    assert metrics["loihi_energy_per_image_nj"] == pytest.approx(metrics["deployed"]["kd"]["loihi_energy_per_image_nj"])
    assert metrics["hidden"] == [24, 16] and list(metrics["spikes_per_image"]) == ["layer0", "layer1", "layer2"]
    assert metrics["teacher_energy_45nm_per_image_nj"] == pytest.approx(4.6)  # 1,000 MACs at 4.6 pJ
    with_baseline = study.loihi_metrics("mnist-5k", "kd", dep, lava_runs, frames["kd"], deployed, refused, seed=1,
                                         teacher_test_accuracy=0.9, teacher_macs=1000, nir=nir, nir_differences=0,
                                         nir_replay_error=0.0, baseline={"variant": "kd"})  # type: ignore[typeddict-item]
    assert set(with_baseline) - set(metrics) == {"baseline"}
