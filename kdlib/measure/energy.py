"""Energy and latency per image under every accounting convention, and an independent check of the counts.

Whether a spiking student costs less than its ANN teacher depends on how the estimate is made, and the
answer flips between the conventions in use (see ``docs/methods.md``, "Energy accounting"). This module
makes every estimate side by side from the counts of :mod:`kdlib.measure.spikes`, and it is the one home of the
published per-operation figures and of the formulas that turn counts into nanojoules and microseconds:

Hardware (per-operation cost tables)
    ``45 nm FP32`` and ``45 nm INT8``: M. Horowitz, "Computing's energy problem (and what we can do about
    it)", ISSCC 2014 (:data:`HOROWITZ_2014`, :data:`HOROWITZ_2014_INT8`).
    ``Loihi (Davies 2018)``: the pre-silicon table of Davies et al., IEEE Micro 2018
    (:data:`DAVIES_2018`). ``Loihi (SANA-FE)``: the silicon-calibrated Loihi model of the
    SANA-FE simulator (:data:`SANA_FE_LOIHI`; energies only, its timing model is not used here).
First-layer conventions (:data:`CONVENTIONS`)
    With direct encoding, a student's first layer receives real-valued pixels: counted as MACs at every
    step, MACs once (the current of a static image computed once and replayed; what the students' code
    does), MACs of the non-zero pixels only at every step (zero-skipping; on Loihi 2, graded input
    spikes), or as the accumulates of a rate-coded version of the input at the same T (expected spikes:
    the pixel intensities times T). A student trained on rate-coded spikes takes spikes under every
    convention. The ANN teacher pays its dense MACs, or its MACs on non-zero inputs of every layer under
    zero-skipping.

Everything after the first layer is the same under every convention: one accumulate per synaptic operation
at 45 nm (neuron updates are left out there, as in the studies this workbook compares with), and synaptic
operations, neuron updates and sent spikes on Loihi. Loihi latency is the serial upper bound of
:func:`loihi_estimate` with Davies et al.'s timings.

:func:`crosscheck_counts` recounts a model's synaptic operations and MACs with SpikingJelly's operation
counters (``spikingjelly.activation_based.op_counter``), which count what the code executes: an
accumulate for every non-zero entry of a binary input to a matrix product, a MAC for every entry of a
real-valued one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.measure.spikes import SpikeCounter
from kdlib.snn.quantize import observe

if TYPE_CHECKING:
    from kdlib.snn.students import Student

# --------------------------------------------------------------------------- published per-operation costs
@dataclass(frozen=True)
class CmosCosts:
    """Energy of 32-bit floating-point arithmetic in 45 nm CMOS: M. Horowitz, "Computing's energy problem
    (and what we can do about it)", ISSCC 2014. A dense layer pays one multiply-accumulate per weight; a
    synaptic operation driven by a binary spike needs only the addition."""

    mac_pj: float = 4.6  # one multiply-accumulate: multiply 3.7 pJ + add 0.9 pJ
    add_pj: float = 0.9  # one addition (accumulate)


@dataclass(frozen=True)
class LoihiCosts:
    """Energy and time of Loihi's operations: M. Davies et al., "Loihi: A Neuromorphic Manycore Processor
    with On-Chip Learning", IEEE Micro 38(1), 2018, Table 2. These are pre-silicon figures; no
    per-operation table has been published for Loihi 2."""

    synop_pj: float = 23.6  # one synaptic spike operation
    synop_ns: float = 3.5
    update_active_pj: float = 81.0  # one neuron update, active
    update_active_ns: float = 8.4
    update_inactive_pj: float = 52.0  # one neuron update, inactive
    update_inactive_ns: float = 5.3
    spike_pj: float = 1.7  # one spike sent within a tile


HOROWITZ_2014 = CmosCosts()
DAVIES_2018 = LoihiCosts()


Convention = Literal["mac_every_step", "mac_once", "zero_skipping", "rate_coded"]

CONVENTIONS: dict[str, str] = {
    "mac_every_step": "MACs at every step",
    "mac_once": "MACs once",
    "zero_skipping": "zero-skipping (graded spikes on Loihi)",
    "rate_coded": "rate-coded input (accumulates)",
}
ON_LOIHI: tuple[str, ...] = ("zero_skipping", "rate_coded")  # the conventions whose input exists on Loihi
SHORT_LABELS: dict[str, str] = {"mac_every_step": "MACs every step", "mac_once": "MACs once",
                                "zero_skipping": "zero-skipping", "rate_coded": "rate code"}

HOROWITZ_2014_INT8 = CmosCosts(mac_pj=0.23, add_pj=0.03)  # 8-bit multiply 0.2 pJ + 8-bit add 0.03 pJ
SANA_FE_LOIHI = LoihiCosts(synop_pj=35.5, update_inactive_pj=51.2, update_active_pj=72.8, spike_pj=76.8)

CMOS: dict[str, CmosCosts] = {"45 nm FP32": HOROWITZ_2014, "45 nm INT8": HOROWITZ_2014_INT8}
LOIHI: dict[str, LoihiCosts] = {"Loihi (Davies 2018)": DAVIES_2018, "Loihi (SANA-FE)": SANA_FE_LOIHI}
HARDWARE: list[str] = [*CMOS, *LOIHI]


@dataclass(frozen=True)
class Measured:
    """A published measurement on silicon, shown beside the estimates."""

    model: str
    dataset: str
    accuracy: float
    energy_nj: float
    latency_us: float
    source: str


RENNER_2024 = Measured("400-400-10 SNN on Loihi, measured", "mnist", 0.963, 2500.0, 170.0,
                       "Renner et al., Nat. Commun. 2024, Table 1")


# --------------------------------------------------------------------------------------------------- counts
@dataclass(frozen=True)
class InputStatistics:
    """What the first layer receives from one image, averaged over a split."""

    pixels: int  # input values per image
    nonzero: float  # non-zero input values per image
    intensity: float  # sum of the input values per image: a rate code's expected spikes per step

    @classmethod
    def of(cls, x: Tensor) -> InputStatistics:
        """Statistics of a batch of images ``x`` (N, ...) with values in [0, 1]."""
        flat = x.flatten(1)
        return cls(flat.shape[1], float(flat.ne(0).sum(dtype=torch.float64)) / len(x),
                   float(flat.sum(dtype=torch.float64)) / len(x))


@dataclass(frozen=True)
class SpikingCounts:
    """Counts per image of a spiking model, as the conventions need them."""

    steps: int
    encoding: str  # "direct" or "rate"
    inputs: InputStatistics
    input_fan_out: float  # synapses driven by one input value (a conv: averaged over positions)
    input_spikes: float  # measured input spikes (rate coding); 0 with direct encoding
    hidden_synops: float  # synaptic operations driven by the spiking layers' spikes
    neuron_updates: float
    spikes: float  # spikes sent by the spiking layers

    @classmethod
    def measured(cls, model: Student, counter: SpikeCounter, encoding: str, inputs: InputStatistics) -> SpikingCounts:
        """The counts of ``model`` that ``counter`` accumulated over a split whose images ``inputs`` describes."""
        total = counter.spikes_per_image()["total"]
        return cls(counter.steps, encoding, inputs, model.input_fan_out(), counter.input_spikes / counter.images,
                   counter.hidden_synops_per_image(), float(counter.neuron_updates_per_image()),
                   total)

    def first_layer(self, convention: Convention) -> tuple[float, float]:
        """(MACs, accumulates) of the first layer per image under ``convention``."""
        fan, t = self.input_fan_out, self.steps
        if self.encoding == "rate":
            return 0.0, self.input_spikes * fan
        ops = {"mac_every_step": (self.inputs.pixels * fan * t, 0.0), "mac_once": (self.inputs.pixels * fan, 0.0),
               "zero_skipping": (self.inputs.nonzero * fan * t, 0.0),
               "rate_coded": (0.0, self.inputs.intensity * t * fan)}
        return ops[_known(convention)]

    def input_synops(self, convention: Convention) -> float | None:
        """Synaptic operations of the input on Loihi, where the convention has a counterpart there: input
        spikes (rate coding, measured or expected) or graded spikes of the non-zero pixels at every step; ``None``
        under the conventions that count MACs, which Loihi does not have (:data:`ON_LOIHI`)."""
        if _known(convention) not in ON_LOIHI:
            return None
        if self.encoding == "rate":
            return self.input_spikes * self.input_fan_out
        if convention == "zero_skipping":
            return self.inputs.nonzero * self.input_fan_out * self.steps
        if convention == "rate_coded":
            return self.inputs.intensity * self.steps * self.input_fan_out
        return None


@dataclass(frozen=True)
class AnnCounts:
    """Multiply-accumulates per image of an ANN: all of them, and those with a non-zero input."""

    macs: float
    nonzero_macs: float

    def for_convention(self, convention: Convention) -> float:
        return self.nonzero_macs if _known(convention) == "zero_skipping" else self.macs


def ann_counts(model: nn.Module, x: Tensor, batch_size: int = 1000) -> AnnCounts:
    """Count the MACs of ``model``'s ``nn.Linear`` and ``nn.Conv2d`` layers over images ``x``, in evaluation
    mode: all of them, and those whose input value is non-zero (exact for convolutions too: each output
    position counts the non-zero inputs in its receptive field)."""
    totals = {"macs": 0.0, "nonzero": 0.0}

    def count(layer: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        inp = args[0]
        if isinstance(layer, nn.Linear):
            totals["macs"] += inp[..., 0].numel() * layer.in_features * layer.out_features
            totals["nonzero"] += float(inp.ne(0).sum(dtype=torch.float64)) * layer.out_features
            return
        per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        totals["macs"] += out.numel() * per_output
        mask = inp.ne(0).to(torch.float32)
        ones = torch.ones(layer.out_channels, layer.in_channels // layer.groups, *layer.kernel_size)
        reach = F.conv2d(mask, ones, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                         groups=layer.groups)
        totals["nonzero"] += float(reach.sum(dtype=torch.float64))

    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    observe(model, layers, x, count, batch_size=batch_size)
    return AnnCounts(totals["macs"] / len(x), totals["nonzero"] / len(x))


def _known(convention: str) -> Convention:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return convention  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------- costs per operation
def ann_energy_nj(macs: float, costs: CmosCosts = HOROWITZ_2014) -> float:
    """45 nm energy of an ANN: one MAC per weight."""
    return macs * costs.mac_pj / 1e3


def snn_energy_nj(synops: float, input_macs: float = 0.0, costs: CmosCosts = HOROWITZ_2014) -> float:
    """45 nm energy of an SNN: one addition per synaptic operation, plus MACs for a layer with real input."""
    return (synops * costs.add_pj + input_macs * costs.mac_pj) / 1e3


class LoihiEstimate(NamedTuple):
    """Energy (nJ) and time (µs) of one image on Loihi, by kind of operation."""

    synops_nj: float
    neurons_nj: float
    spikes_nj: float
    latency_us: float

    @property
    def total_nj(self) -> float:
        return self.synops_nj + self.neurons_nj + self.spikes_nj


def loihi_estimate(synops: float, neuron_updates: float, spikes: float,
                   costs: LoihiCosts = DAVIES_2018) -> LoihiEstimate:
    """Loihi's energy and latency for one image, from its counted operations (pre-silicon figures).

    ``spikes`` are those the chip's neurons send; an update is *active* when its neuron fires at that step
    and *inactive* otherwise, so active updates = spikes. Input spikes come from outside the chip and
    cost their synaptic operations only.

    Latency is an **upper bound**: every operation timed one after the other, as if the whole network ran
    on one core. Loihi's cores work in parallel between time-step barriers, but how a network is spread
    over cores (and so the busiest core's share of each step) depends on a mapping this estimate does not
    know; spike transport time is not in the figures used and is left out.
    """
    inactive = neuron_updates - spikes
    neurons_pj = spikes * costs.update_active_pj + inactive * costs.update_inactive_pj
    time_ns = synops * costs.synop_ns + spikes * costs.update_active_ns + inactive * costs.update_inactive_ns
    return LoihiEstimate(synops * costs.synop_pj / 1e3, neurons_pj / 1e3, spikes * costs.spike_pj / 1e3,
                         time_ns / 1e3)


# --------------------------------------------------------------------------------------------------- energy
def counter_summary(counter: SpikeCounter, cmos: CmosCosts = HOROWITZ_2014,
                    loihi: LoihiCosts = DAVIES_2018) -> dict[str, float]:
    """A counter's counts per image with one convention's energy (the first layer's MACs at every step): spikes by
    layer and in total, mean firing rate, synaptic operations, neuron updates, input MACs, 45 nm energy, Loihi
    energy and latency bound (:func:`snn_energies` gives every convention).

    The Loihi figures count spiking work only: a first layer fed real values (direct encoding) has no
    counterpart among Loihi's operations and is left out of them."""
    spikes = counter.spikes_per_image()
    synops, updates = counter.synops_per_image(), counter.neuron_updates_per_image()
    macs = counter.input_macs_per_image()
    chip = loihi_estimate(synops, updates, spikes["total"], loihi)
    return {
        **{f"spikes_{k}": v for k, v in spikes.items()},
        "firing_rate": spikes["total"] / updates if updates else 0.0,
        "synops": synops, "neuron_updates": float(updates), "input_macs": float(macs),
        "energy_45nm_nj": snn_energy_nj(synops, macs, cmos),
        "energy_loihi_nj": chip.total_nj, "latency_loihi_us": chip.latency_us,
    }


def snn_energies(counts: SpikingCounts) -> pd.DataFrame:
    """Energy (nJ) and Loihi latency bound (µs) of a spiking model per image, one row per hardware and
    convention that applies: columns ``hardware``, ``convention``, ``energy_nj``, ``latency_us``."""
    rows = []
    for convention in CONVENTIONS:
        macs, accumulates = counts.first_layer(convention)  # type: ignore[arg-type]
        for name, costs in CMOS.items():
            energy = snn_energy_nj(accumulates + counts.hidden_synops, macs, costs)
            rows.append({"hardware": name, "convention": convention, "energy_nj": energy, "latency_us": float("nan")})
        input_synops = counts.input_synops(convention)  # type: ignore[arg-type]
        if input_synops is None:
            continue
        for name, costs in LOIHI.items():
            chip = loihi_estimate(counts.hidden_synops + input_synops, counts.neuron_updates, counts.spikes, costs)
            latency = chip.latency_us if costs is DAVIES_2018 else float("nan")
            rows.append({"hardware": name, "convention": convention, "energy_nj": chip.total_nj, "latency_us": latency})
    return pd.DataFrame(rows)


def ann_energies(counts: AnnCounts, precision: Literal["FP32", "INT8"]) -> pd.DataFrame:
    """Energy (nJ) per image of an ANN at 45 nm in ``precision``, one row per convention (same columns as
    :func:`snn_energies`)."""
    costs = CMOS[f"45 nm {precision}"]
    return pd.DataFrame([{"hardware": f"45 nm {precision}", "convention": c,
                          "energy_nj": ann_energy_nj(counts.for_convention(c), costs),  # type: ignore[arg-type]
                          "latency_us": float("nan")} for c in CONVENTIONS])


def loihi_run_energies(synops: float, neuron_updates: float, spikes: float) -> pd.DataFrame:
    """Rows for a network whose input already arrives as spikes and whose operations were counted in a run
    (a student run in Lava, ``synops`` including its input events'): every convention gives the
    same figures (on Loihi, those of :data:`ON_LOIHI`)."""
    counted = SpikingCounts(steps=1, encoding="rate", inputs=InputStatistics(0, 0.0, 0.0), input_fan_out=0,
                            input_spikes=0.0, hidden_synops=synops, neuron_updates=neuron_updates, spikes=spikes)
    return snn_energies(counted)


def wide(table: pd.DataFrame, index: Iterable[str] = ("model",)) -> pd.DataFrame:
    """One row per model and one column per (hardware, convention) from the long ``energy_nj`` table
    (means over any repeated rows, such as seeds); columns in the order of :data:`HARDWARE` and
    :data:`CONVENTIONS`."""
    index = list(index)
    pivot = table.pivot_table(index=index, columns=["hardware", "convention"], values="energy_nj", aggfunc="mean",
                              sort=False)
    order = [(h, c) for h in HARDWARE for c in CONVENTIONS if (h, c) in pivot.columns]
    return pivot[order]


def tables(table: pd.DataFrame, measured: Measured | None = None) -> dict[str, pd.DataFrame]:
    """The long table of one dataset as a reader reads it: ``"45 nm"``, the energy per image (nJ) at 45 nm
    by precision and convention, and ``"Loihi"``, the energy by cost table and convention with the latency
    bound (µs), each with the models' test accuracy (%) first; means over seeds, conventions under their
    :data:`SHORT_LABELS`. ``measured`` adds its row to the Loihi table."""
    accuracy = 100 * table.groupby("model", sort=False).accuracy.mean()
    energy = wide(table).rename(columns=SHORT_LABELS, level="convention")
    out = {}
    for name, hardware in (("45 nm", list(CMOS)), ("Loihi", list(LOIHI))):
        part = energy[[h for h in hardware if h in energy.columns.get_level_values(0)]].dropna(how="all")
        if name == "Loihi":
            latency = table[table.hardware == "Loihi (Davies 2018)"].pivot_table(
                index="model", columns="convention", values="latency_us", sort=False)
            for convention in latency:
                part[("latency bound (µs)", SHORT_LABELS[convention])] = latency[convention]
            if measured is not None:
                row = pd.DataFrame({("measured", "energy"): [measured.energy_nj],
                                    ("measured", "latency (µs)"): [measured.latency_us]},
                                   index=[f"{measured.model} ({measured.source})"])
                part = pd.concat([part, row])
                accuracy = pd.concat([accuracy, pd.Series({row.index[0]: 100 * measured.accuracy})])
        part.insert(0, ("", "test accuracy (%)"), accuracy.reindex(part.index))
        part.columns.names = ["", ""]
        out[name] = part
    return out


def verdicts(table: pd.DataFrame, student: str, rival: str = "ANN teacher (INT8)") -> pd.DataFrame:
    """Per hardware and convention: the energy per image of model ``student`` against ``rival`` at 45 nm in
    the same precision (the FP32 teacher for the FP32 table, the INT8 one otherwise, unless ``rival`` says
    which), their ratio and which costs less. ``table`` is the long table (column ``model``) of one dataset."""
    means = table.groupby(["model", "hardware", "convention"], sort=False).energy_nj.mean()
    rows = []
    for hardware in HARDWARE:
        against = "ANN teacher (FP32)" if hardware == "45 nm FP32" else rival
        rival_hw = "45 nm FP32" if hardware == "45 nm FP32" else "45 nm INT8"
        for convention in CONVENTIONS:
            key, ref = (student, hardware, convention), (against, rival_hw, convention)
            if key not in means.index or ref not in means.index:
                continue
            ratio = means[key] / means[ref]
            rows.append({"student": student, "hardware": hardware, "convention": convention, "student_nj": means[key],
                         "rival": f"{against} at {rival_hw}", "rival_nj": means[ref], "ratio": ratio,
                         "cheaper": "SNN" if ratio < 1 else "ANN"})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------- independent check
@torch.no_grad()
def crosscheck_counts(model: Student, x_seq: Tensor, encoding: str) -> dict[str, float]:
    """Count one chunk's operations per image with kdlib and with SpikingJelly's ``SynOpCounter`` and
    ``MACCounter``, on the same forward pass of ``model`` over the input sequence ``x_seq`` (T, B, ...).

    Returns ``synops`` (kdlib: spikes times fan-outs, input spikes included when the input is rate-coded)
    beside ``synops_spikingjelly``, and ``macs`` (kdlib: the first layer's MACs under ``mac_once``, which is
    what the students compute for a static image) beside ``macs_spikingjelly``."""
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, MACCounter, SynOpCounter

    counter = SpikeCounter.for_model(model, encoding)
    syn, mac = SynOpCounter(), MACCounter()
    with DispatchCounterMode([syn, mac]):
        out = model(x_seq)
    counter.update(out, input_spikes=x_seq if encoding == "rate" else None)
    images = x_seq.shape[1]
    macs = 0.0 if encoding == "rate" else float("nan")
    if encoding == "direct" and counter.input_macs_per_step is not None:
        macs = float(counter.input_macs_per_step)
    return {"synops": counter.synops_per_image(), "synops_spikingjelly": syn.get_total() / images,
            "macs": macs, "macs_spikingjelly": mac.get_total() / images}
