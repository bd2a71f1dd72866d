"""NIR: a norse student written as a NIR graph, read back and replayed with norse.

:func:`export_nir` writes a norse student (:class:`kdlib.students.SpikingMLP`) as a NIR graph through the
norse network that computes the same (:func:`norse_network`); :func:`read_nir` reads it back,
:func:`nir_differences` and :func:`replay_nir` check the trip.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kdlib.io import atomic_path
from kdlib.students import LIFParameters, SpikingMLP


def norse_network(student: SpikingMLP) -> nn.Module:
    """The norse network that computes what ``student`` computes: Linear → ``LIFBoxCell`` per hidden layer,
    then the linear readout. Time is counted in steps (``dt = 1``, ``tau_mem_inv = 1/τ``); neuron
    parameters are per-neuron vectors, so that every NIR node has an explicit shape."""
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
    steps. Two details make the trip work with nir 1.0.8 and h5py 3.16: the sample input has no batch
    dimension (or the Input node's shape disagrees with the first Affine's, and ``nir.read`` rejects the
    graph), and parameters are vectors (a 0-d array cannot be written with nir's default gzip filter).
    """
    import nir

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="nirtorch")
        from norse.torch import to_nir

        graph = to_nir(norse_network(student), torch.zeros(student.synapses[0].in_features), dt=1.0)
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


def replay_nir(graph: Any, x_seq: Tensor) -> Tensor:
    """Run a NIR graph with norse (``norse.torch.from_nir``, ``dt = 1``) step by step on an input sequence
    (T, B, ...); returns the outputs (T, B, classes), to compare with the student's own."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="nirtorch")
        from norse.torch import from_nir

        module = from_nir(graph, dt=1.0)
    state, outputs = None, []
    with torch.no_grad():
        for x_t in x_seq.flatten(2):
            y, state = module(x_t, state)
            outputs.append(y)
    return torch.stack(outputs)
