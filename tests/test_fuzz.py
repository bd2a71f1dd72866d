"""The parsers that read files from outside raise nothing but the workbook's own errors, under hypothesis.

``_read_idx_gz`` reads the IDX archives of a data root; :func:`kdlib.loihi.deploy.check_netx` reads a netx file
before Lava does. Each either returns what it promises or raises its one error class, whatever the bytes.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdlib.core import data as D

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)


def _header(ndim: int, dims: list[int]) -> bytes:
    return bytes([0, 0, 8, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)


idx_payloads = st.one_of(
    st.binary(max_size=64),  # anything at all
    st.builds(lambda dims, extra, payload: _header(len(dims), dims)[: len(dims) * 4 + 4 - extra] + payload,
              st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 8), max_size=6),
              st.integers(0, 3), st.binary(max_size=64)),  # a plausible header, possibly cut short
)


@EXAMPLES
@given(payload=idx_payloads, compress=st.booleans())
def test_idx_reader_raises_only_dataset_errors(payload: bytes, compress: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.gz"
        path.write_bytes(gzip.compress(payload) if compress else payload)
        try:
            images = D._read_idx_gz(path)
        except D.DatasetError:
            return
        assert images.dtype == np.uint8 and images.size == len(gzip.decompress(path.read_bytes())) - 4 - 4 * images.ndim


# ----------------------------------------------------------------------------------------------- netx files
KINDS = ["dense", "input", "conv", "flatten", "pool", "", "Dense"]
text = st.sampled_from(KINDS).map(str.encode)


@st.composite
def netx_layers(draw: st.DrawFn) -> list[dict]:
    layers = []
    for _ in range(draw(st.integers(0, 4))):
        layer: dict = {}
        if draw(st.booleans()):
            layer["type"] = draw(st.sampled_from([np.array([draw(text)], dtype="S10"), draw(text),
                                                  np.array([1, 2]), np.float32(3.0)]))
        if draw(st.booleans()):
            shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=3))
            layer["weight"] = np.zeros(shape, dtype=draw(st.sampled_from(["f4", "i2", "S1"])))
        if draw(st.booleans()):
            layer["shape"] = np.array(draw(st.lists(st.integers(-2, 6), min_size=0, max_size=4)),
                                      dtype=draw(st.sampled_from(["i8", "f4"])))
        if draw(st.booleans()):
            layer["neuron"] = {"type": draw(st.sampled_from([b"CUBA", b"LOIHI", b"SDNN", "CUBA"]))}
        if draw(st.booleans()):
            layer["delay"] = np.zeros(2)
        layers.append(layer)
    return layers


def _write(handle: h5py.Group, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            _write(handle.create_group(key), value)
        elif isinstance(value, np.ndarray) and value.shape == (0,) and value.dtype.kind == "S":
            handle.create_dataset(key, shape=(0,), dtype=value.dtype)
        else:
            handle.create_dataset(key, data=value)


@EXAMPLES
@given(layers=netx_layers(), names=st.sampled_from(["sequential", "skip", "words"]), group=st.booleans())
def test_netx_check_raises_only_netx_errors(layers: list[dict], names: str, group: bool) -> None:
    from kdlib.loihi.deploy import NetxError, check_netx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.net"
        with h5py.File(path, "w") as handle:
            if group:
                root = handle.create_group("layer")
                for i, layer in enumerate(layers):
                    name = {"sequential": str(i), "skip": str(2 * i), "words": f"layer{i}"}[names]
                    _write(root.create_group(name), layer)
            else:
                handle.create_dataset("layer", data=np.zeros(3))
        try:
            widths = check_netx(path)
        except NetxError as err:
            assert str(err).startswith(str(path)), err
            return
        assert len(widths) >= 2 and all(w >= 0 for w in widths)


@pytest.mark.parametrize("content", [b"", b"\x89HDF\r\n\x1a\n" + bytes(100), b"garbage" * 50])
def test_netx_check_on_files_that_are_not_hdf5(tmp_path: Path, content: bytes) -> None:
    from kdlib.loihi.deploy import NetxError, check_netx

    path = tmp_path / "net.net"
    path.write_bytes(content)
    with pytest.raises(NetxError, match=rf"^{path} is not an HDF5 file that netx can read"):
        check_netx(path)
