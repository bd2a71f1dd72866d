"""NIR: a norse student written as a NIR graph that other simulators read as the student computes.

:func:`export_nir` writes a LIF student (:class:`kdlib.snn.students.SpikingMLP`) as a NIR graph through the
norse network that computes the same (:func:`norse_network`); :func:`read_nir` reads it back,
:func:`nir_differences` checks the trip, and :func:`replay_nir` runs a graph with the NIR importer of norse,
snnTorch or SpikingJelly (:data:`IMPORTERS`), so that :func:`importer_agreement` can compare each with the
student, image by image. For the Loihi stage, :func:`deployed_agreement` does that for every deployed student of
stage 2, :func:`round_trip` checks one student's trip through a file, and :func:`node_table` lists a graph's nodes.

**Time.** NIR's LIF node integrates τ·dv/dt = (v_leak − v) + R·I in seconds, and an importer steps it with
its own dt. The students live in time steps (τ = 2 steps), so a step is given a length, :data:`DT` = 0.1 ms,
and τ is written in seconds (τ_steps · DT) with ``dt`` recorded in the graph's metadata. DT is the step that
snnTorch 1.0's importer assumes (it has no argument for it) and SpikingJelly 2.0's default, and norse replays
with ``dt = DT``: with dt/τ = 1/τ_steps every importer updates v ← v + (I − v)/τ_steps as the student does.
One difference remains, in the rule, not the numbers: SpikingJelly fires where v ≥ θ, the student, norse and
snnTorch where v > θ; an image whose membrane lands exactly on θ would differ (none did in the runs here).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from kdlib.core.data import encode
from kdlib.core.io import atomic_path
from kdlib.core.layout import seed_checkpoint
from kdlib.snn.students import LIFParameters, SpikingMLP, load_student

DT = 1e-4  # seconds per time step in the NIR graph: snnTorch 1.0's fixed step and SpikingJelly 2.0's default
IMPORTERS = ("norse", "snntorch", "spikingjelly")  # the NIR importers replay_nir runs


def norse_network(student: SpikingMLP) -> nn.Module:
    """The norse network that computes what ``student`` computes: Linear → ``LIFBoxCell`` per hidden layer,
    then the linear readout, in time steps (``dt = 1``, ``tau_mem_inv = 1/τ``; :func:`export_nir` gives a step
    its length in seconds). Neuron parameters are per-neuron vectors, so that every NIR node has an explicit
    shape."""
    if not isinstance(student, SpikingMLP) or any(not isinstance(n.params, LIFParameters) for n in student.neurons):
        raise ValueError("only SpikingMLP students with 'lif' neurons map onto NIR's LIF node")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.script.*")
        import norse.torch as norse
        from norse.torch.functional.lif_box import LIFBoxParameters

    modules: list[nn.Module] = []
    for synapse, neurons in zip(student.synapses, student.neurons, strict=True):
        n = synapse.out_features
        params = LIFBoxParameters(tau_mem_inv=torch.full((n,), 1.0 / neurons.params.tau_mem),
                                  v_th=torch.full((n,), float(neurons.params.v_th)), v_leak=torch.zeros(n))
        modules += [synapse, norse.LIFBoxCell(params, dt=1.0)]
    return norse.SequentialState(*modules, student.head)


def export_nir(student: SpikingMLP, path: str | Path) -> Any:
    """Write ``student`` as a NIR graph (HDF5, atomically) with ``norse.torch.to_nir``; return the graph.

    The graph holds Input (784) → [Affine → LIF] × hidden layers → Affine → Output, LIF time constants in
    seconds and ``metadata["dt"]`` = :data:`DT` (no importer reads it; it tells a reader the step). Two details
    make the trip work with nir 1.0.8 and h5py 3.16: the sample input has no batch
    dimension (or the Input node's shape disagrees with the first Affine's, and ``nir.read`` rejects the
    graph), and parameters are vectors (a 0-d array cannot be written with nir's default gzip filter).
    """
    import nir

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="nirtorch")
        from norse.torch import to_nir

        graph = to_nir(norse_network(student), torch.zeros(student.synapses[0].in_features), dt=DT)
    graph.metadata = {**(graph.metadata or {}), "dt": DT}
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    return graph


def read_nir(path: str | Path) -> Any:
    """Read a NIR graph written by :func:`export_nir`."""
    import nir

    return nir.read(path)


def nir_differences(a: Any, b: Any) -> list[str]:
    """What differs between two NIR graphs: node names and types, edges, array parameters; empty if none."""
    diffs = []
    if set(a.nodes) != set(b.nodes):
        diffs.append(f"nodes {sorted(a.nodes)} != {sorted(b.nodes)}")
    if set(map(tuple, a.edges)) != set(map(tuple, b.edges)):
        diffs.append("edges differ")
    for name in sorted(set(a.nodes) & set(b.nodes)):
        x, y = a.nodes[name], b.nodes[name]
        if type(x) is not type(y):
            diffs.append(f"{name}: {type(x).__name__} != {type(y).__name__}")
            continue
        for key, value in vars(x).items():
            if key in ("input_type", "output_type", "metadata"):
                continue
            if not np.array_equal(np.asarray(value), np.asarray(getattr(y, key, None))):
                diffs.append(f"{name}.{key} differs")
    return diffs


def replay_nir(graph: Any, x_seq: Tensor, importer: str = "norse") -> tuple[Tensor, list[Tensor]]:
    """Run a NIR graph imported by ``importer`` (one of :data:`IMPORTERS`) step by step on an input sequence
    (T, B, ...) from rest; return the readout at every step (T, B, classes) and each hidden LIF layer's spikes
    (T, B, n), to compare with the student's own."""
    if importer not in IMPORTERS:
        raise ValueError(f"importer = {importer!r}: choose one of {', '.join(IMPORTERS)}")
    module, neurons = _imported(graph, importer)
    spikes: list[list[Tensor]] = [[] for _ in neurons]
    hooks = [m.register_forward_hook(lambda _m, _i, out, i=i: spikes[i].append(
        (out[0] if isinstance(out, tuple) else out).detach())) for i, m in enumerate(neurons)]
    state, outputs = None, []
    try:
        with torch.no_grad():
            for x_t in x_seq.flatten(2):
                y, state = module(x_t, state)
                outputs.append(y)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(outputs), [torch.stack(s) for s in spikes]


def _imported(graph: Any, importer: str) -> tuple[nn.Module, list[nn.Module]]:
    """The module an importer builds from ``graph`` (fresh, at rest) and its hidden neuron modules, in order."""
    import contextlib
    import io

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # snnTorch prints its mapping
        warnings.simplefilter("ignore")
        if importer == "norse":
            from norse.torch import from_nir
            from norse.torch.module.lif_box import LIFBoxCell

            module = from_nir(graph, dt=DT)
            return module, [m for m in module.modules() if isinstance(m, LIFBoxCell)]
        if importer == "snntorch":
            import snntorch
            import snntorch.utils
            from snntorch.import_nir import import_from_nir

            module = import_from_nir(graph)
            snntorch.utils.reset(module)  # its membranes live in the modules: start from rest
            return module, [m for m in module.modules() if isinstance(m, snntorch.Leaky)]
        from spikingjelly.activation_based import neuron
        from spikingjelly.activation_based.nir_exchange import import_from_nir

        module = import_from_nir(graph, dt=DT, step_mode="s")
        return module, [m for m in module.modules() if isinstance(getattr(m, "module", None), neuron.LIFNode)]


def importer_agreement(graph: Any, student: SpikingMLP, x: Tensor, steps: int, chunk: int = 1000) -> dict[str, dict]:
    """How each importer's replay of ``graph`` agrees with ``student`` on images ``x`` (direct input, ``steps``
    steps): the fraction of images with the same predicted class and with the same spike count in every hidden
    layer, and the largest difference of a readout value."""
    result = {}
    for importer in IMPORTERS:
        same_class = same_spikes = 0
        worst = 0.0
        for start in range(0, len(x), chunk):
            x_seq = x[start:start + chunk].flatten(1).unsqueeze(0).expand(steps, -1, -1)
            with torch.no_grad():
                own = student(x_seq)
            outputs, spikes = replay_nir(graph, x_seq, importer)
            same_class += int((outputs.mean(0).argmax(1) == own.logits.argmax(1)).sum())
            per_image = torch.stack([(a.sum((0, 2)) == b.flatten(2).sum((0, 2))) for a, b in
                                     zip(spikes, own.spikes, strict=True)]).all(0)
            same_spikes += int(per_image.sum())
            worst = max(worst, (outputs - own.outputs).abs().max().item())
        result[importer] = {"images": len(x), "same_class": same_class / len(x),
                            "same_spike_counts": same_spikes / len(x), "max_readout_difference": worst}
    return result


# ------------------------------------------------------------------------------------------ the Loihi stage
def deployed_agreement(students_dir: str | Path, runs: dict[str, tuple[int, int]], models_dir: str | Path,
                       x: Tensor) -> dict[tuple[str, str], dict[str, float]]:
    """Every student of ``runs`` (variant → (seed, steps), from stage 2's folder of a dataset, ``students_dir``)
    written as ``models_dir/<variant>.nir``, read back, and replayed by every importer on images ``x``:
    :func:`importer_agreement`'s rows by (variant, importer)."""
    rows = {}
    for name, (seed, steps) in runs.items():
        student, _ = load_student(seed_checkpoint(Path(students_dir) / name, seed))
        export_nir(student, Path(models_dir) / f"{name}.nir")
        found = importer_agreement(read_nir(Path(models_dir) / f"{name}.nir"), student.eval(), x, steps=steps)
        for importer, row in found.items():
            rows[(name, importer)] = row
    return rows


class RoundTrip(NamedTuple):
    """What :func:`round_trip` found: the graph written, the graph read back, their differences
    (:func:`nir_differences`) and the largest difference of an output when norse runs the graph read back."""

    graph: Any
    back: Any
    differences: list[str]
    replay_error: float


def round_trip(student: SpikingMLP, path: str | Path, x: Tensor, steps: int, encoding: str) -> RoundTrip:
    """Write ``student`` to ``path``, read it back, compare the two graphs node by node, and replay the graph read
    back with norse on images ``x`` (encoded at ``steps`` with ``encoding``, seed 0) beside the student."""
    graph = export_nir(student, path)
    back = read_nir(path)
    differences = nir_differences(graph, back)
    x_seq = encode(x, steps, encoding, torch.Generator().manual_seed(0))
    with torch.no_grad():
        replay_error = (replay_nir(back, x_seq)[0] - student(x_seq).outputs).abs().max().item()
    return RoundTrip(graph, back, differences, replay_error)


def node_table(graph: Any) -> pd.DataFrame:
    """A NIR graph's nodes, by name: each node's type and the shape of each of its parameters."""
    return pd.DataFrame([{"node": k, "type": type(v).__name__,
                          "shapes": {a: np.shape(getattr(v, a)) for a in vars(v) if a not in
                                     ("input_type", "output_type", "metadata")}}
                         for k, v in sorted(graph.nodes.items())])
