"""Atomic file output and safe checkpoint input.

Output: a file is either absent or complete, never half-written.

Every artefact a later stage reads (checkpoints, metrics, histories, executed notebooks) is
written to a temporary file in the destination folder and moved into place with one
``os.replace``, which is atomic on POSIX file systems. An interrupted run therefore leaves
either the previous complete file or nothing at the destination; a write that fails (a full disk, a
file-size limit) raises :class:`WriteError` naming the file, and the previous file stays as it was.

Input: checkpoints are read with :func:`load_torch`, which unpickles tensors, containers and plain
numbers only (``torch.load(..., weights_only=True)``), so a ``.pt`` file from elsewhere (a DVC remote, a
shared folder) cannot run code when it is opened. The workbook's checkpoints hold nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


class WriteError(OSError):
    """An output file could not be written; the previous version of it, if any, is untouched."""


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, holds more than weights and plain values, or lacks what is expected."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".partial-{dest.stem}-", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
            os.replace(tmp_path, dest)
        except OSError as err:
            if isinstance(err, WriteError):
                raise
            kept = "the previous file is kept" if dest.exists() else "nothing was written there"
            raise WriteError(err.errno, f"could not write {dest} ({err.strerror or err}); {kept}. "
                             "Free disk space or raise the file-size limit, then rerun the stage.") from err
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text())


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` ``obj`` atomically."""
    import torch  # imported here so that light users of this module (the stage runner) stay fast

    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:  # how torch's archive writer reports a failed write (a full disk, a size limit)
            raise OSError(errno.EIO, f"torch.save failed: {str(err).splitlines()[0]}") from err


def write_csv(path: str | os.PathLike[str], frame: Any) -> None:
    """Write a pandas DataFrame as CSV (no index), atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def load_torch(path: str | os.PathLike[str], map_location: Any = "cpu", *, mmap: bool = False) -> Any:
    """Read a checkpoint safely: tensors, containers and plain values only, never code.

    With ``mmap``, tensors are mapped from the file instead of read into memory (processes that map one
    file share its pages). Raises :class:`CheckpointError` naming the file if it is unreadable or holds any
    other object.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} is not a checkpoint that can be loaded safely ({reason[:200]}). It is corrupted or holds "
            "objects other than weights and plain values, which are never unpickled here. Delete it and "
            "rerun the stage that writes it, or `dvc pull` a good copy.") from None


def load_checkpoint(path: str | os.PathLike[str], kind: str,
                    required: tuple[str, ...] = ("config", "num_classes", "state_dict")) -> dict[str, Any]:
    """A ``kind`` checkpoint of this workbook (``"teacher"``, ``"student"``), read with :func:`load_torch`."""
    ckpt = load_torch(path)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != kind or any(key not in ckpt for key in required):
        raise CheckpointError(f"{path} is not a {kind} checkpoint of this workbook (it needs kind={kind!r} and "
                              f"{', '.join(required)}). Delete it and rerun the stage that writes it.")
    return ckpt


# the stage that writes each kind of checkpoint, named in what an error tells the user to run
WRITTEN_BY = {"teacher": "teacher stage", "student": "distillation stage"}


def load_model(path: str | os.PathLike[str], kind: str,
               build: Callable[[dict[str, Any]], nn.Module]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a ``kind`` model from its checkpoint: ``build(checkpoint)`` makes the network its config
    describes, and the stored weights go into it. Returns the model (eval mode) and the checkpoint."""
    path = Path(path)
    stage = WRITTEN_BY[kind]
    if not path.is_file():
        raise FileNotFoundError(f"{kind} checkpoint {path} not found: run the {stage} first.")
    ckpt = load_checkpoint(path, kind)
    try:
        model = build(ckpt)
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{path}: its weights do not fit the {kind} its config describes "
                              f"({str(err).splitlines()[0]}). Rerun the {stage}.") from None
    return model.eval(), ckpt
