"""kdlib.core.data on the real datasets: shapes, splits, determinism, encoders and bad input."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from kdlib.core import data as D


def test_mnist5k_splits(mnist5k: D.Dataset) -> None:
    assert (len(mnist5k.train), len(mnist5k.val), len(mnist5k.test)) == (3500, 500, 1000)
    assert mnist5k.input_shape == (1, 28, 28) and mnist5k.num_classes == 10
    for split in (mnist5k.train, mnist5k.val, mnist5k.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert 0.0 <= split.x.min() and split.x.max() <= 1.0
    # the test set is class-balanced, and no image is in two splits
    assert torch.bincount(mnist5k.test.y).tolist() == [100] * 10
    flat = {tuple(x.flatten().nonzero().flatten().tolist()[:40]) for x in mnist5k.val.x}
    assert not any(tuple(x.flatten().nonzero().flatten().tolist()[:40]) in flat for x in mnist5k.test.x[:200])


def test_split_is_deterministic_and_seeded() -> None:
    a, b = D.load_dataset("mnist-5k"), D.load_dataset("mnist-5k")
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    c = D.load_dataset("mnist-5k", split_seed=1, val_size=700)
    assert len(c.val) == 700 and len(c.train) == 3300
    assert not torch.equal(c.val.y[:500], a.val.y)
    assert torch.equal(c.test.x, a.test.x)  # the test set never depends on the split


def test_archive_lists_are_torchvisions() -> None:
    """kdlib.core.data keeps the file names, MD5s and class names of torchvision's MNIST classes so that loading a
    dataset need not import torchvision; they must stay torchvision's."""
    from torchvision import datasets as tvd

    for ours, theirs in ((D.MNIST, tvd.MNIST), (D.FashionMNIST, tvd.FashionMNIST)):
        assert list(ours.resources) == list(theirs.resources) and list(ours.classes) == list(theirs.classes)
        assert ours.torchvision_class == theirs.__name__


def test_full_datasets_from_idx_folder(idx_root: Path) -> None:
    for name, classes in (("mnist", "0 - zero"), ("fashion-mnist", "T-shirt/top")):
        ds = D.load_dataset(name, root=idx_root, download=False)
        assert (len(ds.train), len(ds.val), len(ds.test)) == (55000, 5000, 10000)
        assert ds.classes[0] == classes and ds.train.x.shape[1:] == (1, 28, 28)
        assert torch.bincount(ds.test.y).tolist() == ([1000] * 10 if name == "fashion-mnist" else
                                                      [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_batches_cover_split_once(mnist5k: D.Dataset) -> None:
    gen = torch.Generator().manual_seed(0)
    shuffled = list(D.batches(mnist5k.val, 64, shuffle=True, generator=gen))
    index = torch.cat([b.index for b in shuffled])
    assert torch.equal(index.sort().values, torch.arange(500))  # every image exactly once
    assert all(torch.equal(b.y, mnist5k.val.y[b.index]) and torch.equal(b.x, mnist5k.val.x[b.index])
               for b in shuffled)
    in_order = list(D.batches(mnist5k.val, 64))
    assert [len(b.y) for b in in_order] == [64] * 7 + [52]
    assert torch.equal(torch.cat([b.index for b in in_order]), torch.arange(500))


def test_random_shift_moves_content(mnist5k: D.Dataset) -> None:
    x = mnist5k.train.x[:8]
    gen = torch.Generator().manual_seed(0)
    shifted = D.random_shift(x, 2, gen)
    assert shifted.shape == x.shape
    assert torch.equal(D.random_shift(x, 0), x)
    # each image is a translate of the original: same pixels, unless cut at the border
    assert torch.allclose(shifted.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.05)
    assert torch.equal(D.random_shift(x, 2, torch.Generator().manual_seed(0)), shifted)


def test_encoders(mnist5k: D.Dataset) -> None:
    x = mnist5k.train.x[:16]
    direct = D.encode(x, 4, "direct")
    assert direct.shape == (4, 16, 1, 28, 28) and torch.equal(direct[3], x)
    rate = D.encode(x, 200, "rate", torch.Generator().manual_seed(0))
    assert set(rate.unique().tolist()) <= {0.0, 1.0}
    assert (rate.mean(0) - x).abs().max() < 0.15  # firing probability = intensity
    assert not rate[:, x == 0].any() and rate[:, x == 1].all() and (x == 1).any()  # black never fires, white always
    again = D.encode(x, 200, "rate", torch.Generator().manual_seed(0))
    assert torch.equal(rate, again)
    with pytest.raises(ValueError, match="unknown encoding 'phase'; choose one of direct, rate"):
        D.encode(x, 4, "phase")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- bad input
def test_unknown_dataset() -> None:
    with pytest.raises(D.DatasetError, match="unknown dataset 'cifar'; choose one of mnist, fashion-mnist, mnist-5k"):
        D.load_dataset("cifar")


def _copy(idx_root: Path, tmp_path: Path) -> Path:
    shutil.copytree(idx_root / "mnist", tmp_path / "mnist")
    return tmp_path / "mnist"


def test_missing_file_without_download(idx_root: Path, tmp_path: Path) -> None:
    folder = _copy(idx_root, tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(D.DatasetError, match=r"t10k-labels-idx1-ubyte.gz is missing\. Copy the four IDX"):
        D.load_dataset("mnist", root=tmp_path, download=False)


def test_missing_file_and_no_network(idx_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _copy(idx_root, tmp_path)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    # a mirror that refuses connections, as every dataset host does on a machine without network
    monkeypatch.setattr(D.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(D.DatasetError, match=r"train-labels-idx1-ubyte.gz is missing and could not be downloaded"):
        D.load_dataset("mnist", root=tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz"
    ]  # no partial download left behind


def test_corrupted_file(idx_root: Path, tmp_path: Path) -> None:
    folder = _copy(idx_root, tmp_path)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])  # a truncated archive
    with pytest.raises(D.DatasetError, match=r"train-images-idx3-ubyte.gz is corrupted: MD5 [0-9a-f]{32}, "
                                             r"expected f68b3c2dcbeaaa9fbdd348bbdeb94873\. Delete it"):
        D.load_dataset("mnist", root=tmp_path, download=False)


def test_truncated_idx_payload(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(100)))
    with pytest.raises(D.DatasetError, match=r"x.gz is truncated: header says \(2, 28, 28\), found 100 bytes"):
        D._read_idx_gz(path)
