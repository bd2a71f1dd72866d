"""Energy under every accounting convention (kdlib.measure.energy), the INT8 teacher (kdlib.snn.quantize), and the
operation counts against an independent counter (SpikingJelly's)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from kdlib.core.data import Dataset, batches, encode
from kdlib.measure import energy as E
from kdlib.measure.energy import DAVIES_2018
from kdlib.measure.spikes import SpikeCounter
from kdlib.snn.quantize import INT8_MAX, quantize_int8
from kdlib.snn.students import LIFParameters, SpikingMLP
from kdlib.snn.teachers import MLPTeacher

INPUTS = E.InputStatistics(pixels=4, nonzero=2.0, intensity=1.5)


def _direct(**changes: float) -> E.SpikingCounts:
    base = {"steps": 3, "encoding": "direct", "inputs": INPUTS, "input_fan_out": 5, "input_spikes": 0.0,
            "hidden_synops": 100.0, "neuron_updates": 30.0, "spikes": 10.0}
    return E.SpikingCounts(**(base | changes))


def test_input_statistics_of_real_digits(mnist5k: Dataset) -> None:
    x = mnist5k.test.x[:100]
    stats = E.InputStatistics.of(x)
    assert stats.pixels == 784
    assert stats.nonzero == pytest.approx((x != 0).sum().item() / 100)
    assert stats.intensity == pytest.approx(x.sum().item() / 100, rel=1e-6)
    assert 0 < stats.intensity < stats.nonzero < 784


def test_first_layer_conventions_by_hand() -> None:
    c = _direct()  # 4 pixels, 2 non-zero, intensities summing to 1.5; fan-out 5; T = 3
    assert c.first_layer("mac_every_step") == (60, 0.0)
    assert c.first_layer("mac_once") == (20, 0.0)
    assert c.first_layer("zero_skipping") == (30, 0.0)
    assert c.first_layer("rate_coded") == (0.0, pytest.approx(22.5))
    assert c.input_synops("mac_every_step") is None and c.input_synops("mac_once") is None
    assert c.input_synops("zero_skipping") == 30 and c.input_synops("rate_coded") == pytest.approx(22.5)
    rate = _direct(encoding="rate", input_spikes=7.0)  # measured input spikes, the same under every convention
    assert {rate.first_layer(k) for k in E.CONVENTIONS} == {(0.0, 35.0)}
    assert {rate.input_synops(k) for k in E.ON_LOIHI} == {35.0} and rate.input_synops("mac_once") is None
    with pytest.raises(ValueError, match="unknown convention 'dense'.*mac_every_step, mac_once"):
        c.first_layer("dense")  # type: ignore[arg-type]


def test_snn_energies_by_hand() -> None:
    table = E.snn_energies(_direct()).set_index(["hardware", "convention"])
    # 45 nm FP32, MACs at every step: 60 MACs × 4.6 pJ + 100 adds × 0.9 pJ
    assert table.energy_nj["45 nm FP32", "mac_every_step"] == pytest.approx((60 * 4.6 + 100 * 0.9) / 1e3)
    assert table.energy_nj["45 nm INT8", "rate_coded"] == pytest.approx((122.5 * 0.03) / 1e3)
    # Loihi exists only where the input is spikes; SANA-FE: 35.5 pJ per synop, 51.2 / 72.8 per inactive / active
    # update (10 active of 30), 76.8 per spike
    assert ("Loihi (SANA-FE)", "mac_once") not in table.index
    sana = (130 * 35.5 + 10 * 72.8 + 20 * 51.2 + 10 * 76.8) / 1e3
    assert table.energy_nj["Loihi (SANA-FE)", "zero_skipping"] == pytest.approx(sana)
    davies = table.loc[("Loihi (Davies 2018)", "zero_skipping")]
    assert davies.energy_nj == pytest.approx((130 * 23.6 + 10 * 81 + 20 * 52 + 10 * 1.7) / 1e3)
    assert davies.latency_us == pytest.approx((130 * 3.5 + 10 * 8.4 + 20 * 5.3) / 1e3)
    assert table.latency_us.loc["Loihi (SANA-FE)"].isna().all() and table.latency_us.loc["45 nm FP32"].isna().all()
    assert len(table) == 2 * 4 + 2 * 2


def test_ann_counts_by_hand_and_against_unfold() -> None:
    mlp = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 4))
    with torch.no_grad():
        mlp[0].weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]))
        mlp[0].bias.zero_()
    x = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])  # hidden: [1, 0] and [0, 0]
    counts = E.ann_counts(mlp, x)
    assert counts.macs == 3 * 2 + 2 * 4
    assert counts.nonzero_macs == pytest.approx(((2 * 2 + 1 * 4) + 0) / 2)
    assert counts.for_convention("zero_skipping") == counts.nonzero_macs and counts.for_convention("mac_once") == 14

    conv = nn.Conv2d(2, 3, 3, padding=1, stride=2)
    x = (torch.rand(4, 2, 7, 7, generator=torch.Generator().manual_seed(0)) > 0.6).float()
    counts = E.ann_counts(conv, x)
    cols = nn.functional.unfold(x, 3, padding=1, stride=2)  # (B, 2·3·3, positions): one column per output
    assert counts.macs == cols.shape[1] * cols.shape[2] * 3
    assert counts.nonzero_macs == pytest.approx(cols.ne(0).sum().item() * 3 / 4)


def test_ann_energies_and_verdicts() -> None:
    teacher = E.AnnCounts(macs=1000.0, nonzero_macs=200.0)
    fp32, int8 = E.ann_energies(teacher, "FP32"), E.ann_energies(teacher, "INT8")
    assert fp32.set_index("convention").energy_nj.to_dict() == pytest.approx(
        {"mac_every_step": 4.6, "mac_once": 4.6, "zero_skipping": 0.92, "rate_coded": 4.6})
    assert int8.energy_nj.iloc[0] == pytest.approx(0.23)
    table = pd.concat([E.snn_energies(_direct()).assign(model="s"), fp32.assign(model="ANN teacher (FP32)"),
                       int8.assign(model="ANN teacher (INT8)")])
    flips = E.verdicts(table, "s").set_index(["hardware", "convention"])
    assert len(flips) == 12 and set(flips.student) == {"s"}
    row = flips.loc[("45 nm FP32", "mac_every_step")]
    assert row.rival == "ANN teacher (FP32) at 45 nm FP32"
    assert row.ratio == pytest.approx(0.366 / 4.6) and row.cheaper == "SNN"
    loihi = flips.loc[("Loihi (Davies 2018)", "zero_skipping")]
    assert loihi.rival == "ANN teacher (INT8) at 45 nm INT8" and loihi.rival_nj == pytest.approx(0.046)
    assert loihi.cheaper == "ANN"
    wide = E.wide(table)
    assert list(wide.columns[:4]) == [("45 nm FP32", c) for c in E.CONVENTIONS]
    assert pd.isna(wide.loc["ANN teacher (FP32)", ("45 nm INT8", "mac_once")])


def test_loihi_run_energies_match_the_pre_silicon_estimate() -> None:
    table = E.loihi_run_energies(1000.0, 50.0, 20.0)
    davies = table[table.hardware == "Loihi (Davies 2018)"]
    assert davies.energy_nj.nunique() == 1 and set(davies.convention) == set(E.ON_LOIHI)
    assert davies.energy_nj.iloc[0] == pytest.approx((1000 * DAVIES_2018.synop_pj + 20 * 81 + 30 * 52 + 20 * 1.7) / 1e3)
    assert table[table.hardware == "45 nm INT8"].energy_nj.iloc[0] == pytest.approx(1000 * 0.03 / 1e3)


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_counts_agree_with_spikingjelly(encoding: str, mnist5k: Dataset) -> None:
    torch.manual_seed(0)
    student = SpikingMLP(784, (32, 16), 10, neuron=LIFParameters(2.0, 0.3)).eval()
    x_seq = encode(mnist5k.test.x[:64], 4, encoding, torch.Generator().manual_seed(0))
    check = E.crosscheck_counts(student, x_seq, encoding)
    assert check["synops"] > 0 and check["synops"] == pytest.approx(check["synops_spikingjelly"], rel=1e-9)
    assert check["macs"] == pytest.approx(check["macs_spikingjelly"])
    assert check["macs"] == (784 * 32 if encoding == "direct" else 0)
    # and the measured counts behind the energy tables are the same counter's
    counter = SpikeCounter.for_model(student, encoding)
    with torch.no_grad():
        counter.update(student(x_seq), input_spikes=x_seq if encoding == "rate" else None)
    counts = E.SpikingCounts.measured(student, counter, encoding, E.InputStatistics.of(mnist5k.test.x[:64]))
    input_synops = counts.input_spikes * counts.input_fan_out
    assert counts.hidden_synops + input_synops == pytest.approx(check["synops"])
    assert counts.neuron_updates == 48 * 4 and counts.input_fan_out == 32


# ------------------------------------------------------------------------------------------- INT8 teacher
@pytest.fixture(scope="module")
def teacher(mnist5k: Dataset) -> MLPTeacher:
    """A 784-64-10 teacher trained for one epoch on the real mnist-5k digits."""
    torch.manual_seed(0)
    model = MLPTeacher(784, (64,), 10, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for b in batches(mnist5k.train, 64, shuffle=True, generator=torch.Generator().manual_seed(0)):
        loss = nn.functional.cross_entropy(model(b.x).logits, b.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_int8_teacher_is_on_the_integer_grid_and_close_to_float(teacher: MLPTeacher, mnist5k: Dataset) -> None:
    before = [p.clone() for p in teacher.parameters()]
    q = quantize_int8(teacher, mnist5k.val.x[:300])
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))  # a copy
    for layer in (q.hidden[0], q.head):
        w = layer.weight
        scale = w.abs().amax(1, keepdim=True) / INT8_MAX
        levels = w / scale
        assert torch.allclose(levels, levels.round(), atol=1e-3) and levels.abs().max() <= INT8_MAX + 1e-3
    with torch.no_grad():
        x = mnist5k.test.x
        acc_float = (teacher(x).logits.argmax(1) == mnist5k.test.y).float().mean().item()
        acc_int8 = (q(x).logits.argmax(1) == mnist5k.test.y).float().mean().item()
    assert acc_float > 0.85 and abs(acc_int8 - acc_float) <= 0.01


def test_int8_quantisation_refuses_what_it_cannot_represent(teacher: MLPTeacher, mnist5k: Dataset) -> None:
    with pytest.raises(ValueError, match="negative inputs"):
        quantize_int8(teacher, mnist5k.val.x[:10] - 0.5)
    with pytest.raises(ValueError, match="at least one calibration image"):
        quantize_int8(teacher, mnist5k.val.x[:0])
    with pytest.raises(ValueError, match="BatchNorm1d"):
        quantize_int8(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), torch.rand(3, 4))


def test_tables_for_the_reader() -> None:
    teacher = E.AnnCounts(macs=1000.0, nonzero_macs=200.0)
    table = pd.concat([E.snn_energies(_direct()).assign(model="s", accuracy=0.9),
                       E.ann_energies(teacher, "FP32").assign(model="ANN teacher (FP32)", accuracy=0.95),
                       E.ann_energies(teacher, "INT8").assign(model="ANN teacher (INT8)", accuracy=0.94)])
    out = E.tables(table, E.RENNER_2024)
    cmos, chip = out["45 nm"], out["Loihi"]
    assert cmos.columns[0] == ("", "test accuracy (%)") and cmos.loc["s", ("", "test accuracy (%)")] == 90
    assert ("45 nm INT8", "zero-skipping") in cmos.columns and len(cmos.columns) == 1 + 8
    assert list(chip.index) == ["s", "400-400-10 SNN on Loihi, measured (Renner et al., Nat. Commun. 2024, Table 1)"]
    assert chip.loc["s", ("Loihi (SANA-FE)", "zero-skipping")] == pytest.approx(
        table[(table.hardware == "Loihi (SANA-FE)") & (table.convention == "zero_skipping")].energy_nj.item())
    assert chip.loc["s", ("latency bound (µs)", "rate code")] > 0
    measured = chip.iloc[1]
    assert measured[("measured", "energy")] == 2500 and measured[("", "test accuracy (%)")] == pytest.approx(96.3)
