"""Hostile files, impossible parameters, broken data roots and failed writes: a clear error, nothing lost."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, TINY

from kdlib.core import data as D
from kdlib.core import params as P
from kdlib.core.io import CheckpointError, read_json, save_torch, write_json
from kdlib.core.params import TeacherParams
from kdlib.core.train import TrainingDiverged, fit
from kdlib.snn.students import build_student, load_student
from kdlib.snn.teachers import build_teacher, load_teacher, save_teacher, train_teacher

PREFIX = "params.yaml: "  # the workbook's own message prefix, whatever pydantic's wording


# --------------------------------------------------------------------------------------- hostile checkpoints
class _RunsCode:
    """Unpickling this runs a shell command: the attack that weights-only loading must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _hostile(path: Path, marker: Path, kind: str) -> Path:
    torch.save({"kind": kind, "config": {}, "num_classes": 10, "state_dict": {}, "payload": _RunsCode(marker)}, path)
    return path


@pytest.mark.parametrize("load", [load_teacher, load_student], ids=["teacher", "student"])
def test_a_hostile_checkpoint_runs_nothing_and_names_the_file(tmp_path: Path, load) -> None:
    marker = tmp_path / "pwned"
    path = _hostile(tmp_path / "model.pt", marker, "teacher" if load is load_teacher else "student")
    with pytest.raises(CheckpointError, match=rf"^{path} is not a checkpoint that can be loaded safely"):
        load(path)
    assert not marker.exists(), "unpickling ran the attacker's command"


def test_a_hostile_resume_file_runs_nothing(tmp_path: Path, mnist5k: D.Dataset) -> None:
    marker, resume = tmp_path / "pwned", tmp_path / "state.pt"
    _hostile(resume, marker, "resume")
    model = torch.nn.Linear(784, 10)

    def loss_fn(batch: D.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch.x.flatten(1))
        return torch.nn.functional.cross_entropy(logits, batch.y), logits

    with pytest.raises(CheckpointError, match=str(resume)):
        fit(model, mnist5k, loss_fn, lambda x: model(x.flatten(1)), epochs=1, batch_size=500, lr=1e-3,
            resume_path=resume)
    assert not marker.exists()


def test_own_checkpoints_load_weights_only(tmp_path: Path) -> None:
    cfg = P.validate(TeacherParams, TINY["teacher"])
    teacher = build_teacher(cfg)
    save_teacher(tmp_path / "t.pt", teacher, cfg, "mnist-5k", 10, {"test_accuracy": 0.5})
    loaded, ckpt = load_teacher(tmp_path / "t.pt")
    assert ckpt["metrics"] == {"test_accuracy": 0.5}
    pairs = zip(teacher.state_dict().values(), loaded.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("content", [b"", b"not a zip archive", b"PK\x03\x04" + bytes(64)],
                         ids=["empty", "text", "zip"])
def test_a_corrupted_checkpoint_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "teacher.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"^{path} is not a checkpoint that can be loaded safely"):
        load_teacher(path)


def test_a_checkpoint_of_the_wrong_kind_says_so(tmp_path: Path) -> None:
    student = build_student(P.student_for(P.validate(P.StudentParams, TINY["student"]), {"s": P.CEVariant(loss="ce")},
                                          "s", "mnist-5k"))
    save_torch(tmp_path / "s.pt", {"kind": "student", "config": {}, "num_classes": 10,
                                   "state_dict": student.state_dict()})
    with pytest.raises(CheckpointError, match=r"is not a teacher checkpoint of this workbook"):
        load_teacher(tmp_path / "s.pt")


# ------------------------------------------------------------------------------------ impossible parameters
def _load(tmp_path: Path, **changes: dict) -> P.Params:
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    for section, values in changes.items():
        raw[section] = _merge(raw.get(section, {}), values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return P.load(path)


def _merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for key, value in new.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


@pytest.mark.parametrize(("changes", "key"), [
    ({"teacher": {"lr": float("inf")}}, "teacher.lr = inf"),
    ({"student": {"lr": float("inf")}}, "student.lr = inf"),
    ({"variants": {"kd": {"tau_teacher": float("inf")}}}, "variants.kd.tau_teacher = inf"),
    ({"variants": {"kd": {"alpha": float("nan")}}}, "variants.kd.alpha = nan"),
    ({"spikes": {"exit_thresholds": [0.5, float("nan")]}}, "spikes.exit_thresholds.1 = nan"),
    ({"teacher": {"per_dataset": {"mnist-5k": {"lr": float("-inf")}}}}, "teacher.per_dataset.mnist-5k.lr = -inf"),
    ({"variants": {"kd": {"student": {"v_th": float("inf")}}}}, "variants.kd.student.v_th = inf"),
], ids=["teacher-lr", "student-lr", "tau", "alpha-nan", "list", "per-dataset", "override"])
def test_every_float_must_be_finite(tmp_path: Path, changes: dict, key: str) -> None:
    with pytest.raises(P.ParamsError, match=rf"^{PREFIX}{key}: "):
        _load(tmp_path, **changes)


def test_val_size_is_checked_against_the_dataset_before_any_stage(tmp_path: Path) -> None:
    with pytest.raises(P.ParamsError, match=rf"^{PREFIX}data.val_size = 1000000: must be smaller than the 4,000 "
                                            r"training images of mnist-5k.*allowed: 1 to 3999"):
        _load(tmp_path, data={"val_size": 1_000_000})


@pytest.mark.parametrize(("changes", "key"), [
    ({"teacher": {"batch_size": 3600}}, "teacher.batch_size = 3600"),
    ({"student": {"batch_size": 5000}}, r"variants.scratch \(student.batch_size\) = 5000"),
    ({"variants": {"kd": {"student": {"batch_size": 3501}}}}, r"variants.kd \(student.batch_size\) = 3501"),
    ({"loihi": {"batch_size": 4000}}, "loihi.batch_size = 4000"),
], ids=["teacher", "student", "variant", "loihi"])
def test_a_batch_larger_than_the_training_split_is_refused(tmp_path: Path, changes: dict, key: str) -> None:
    with pytest.raises(P.ParamsError, match=rf"^{PREFIX}{key}: larger than the 3,500 training images of mnist-5k"):
        _load(tmp_path, **changes)


def test_a_batch_as_large_as_the_training_split_is_allowed(tmp_path: Path) -> None:
    assert _load(tmp_path, teacher={"batch_size": 3500}).teacher.batch_size == 3500


@pytest.mark.parametrize("section", ["teacher", "student", "loihi"])
def test_epochs_are_bounded(tmp_path: Path, section: str) -> None:
    with pytest.raises(P.ParamsError, match=rf"^{PREFIX}{section}.epochs = 1000000: "):
        _load(tmp_path, **{section: {"epochs": 1_000_000}})
    assert P.MAX_EPOCHS == 1000


# ------------------------------------------------------------------------------------- diverging training
def test_training_that_turns_non_finite_stops_at_once_and_keeps_nothing(tmp_path: Path, mnist5k: D.Dataset) -> None:
    cfg = P.validate(TeacherParams, TINY["teacher"] | {"lr": 1e30, "epochs": 3})
    teacher = build_teacher(cfg)
    resume = tmp_path / "state.pt"
    with pytest.raises(TrainingDiverged, match=r"^teacher mnist-5k: the (training loss is nan|weight \S+ is not "
                                               r"finite) .*epoch 1.* nothing was saved"):
        fit(teacher, mnist5k, lambda b: (torch.nn.functional.cross_entropy(out := teacher(b.x).logits, b.y), out),
            lambda x: teacher(x).logits, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
            resume_path=resume, desc="teacher mnist-5k")
    assert not resume.exists(), "a diverged epoch was saved for resuming"


def test_a_nan_loss_names_epoch_and_batch(mnist5k: D.Dataset) -> None:
    model = torch.nn.Linear(784, 10)
    calls = []

    def loss_fn(batch: D.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        logits = model(batch.x.flatten(1))
        loss = torch.nn.functional.cross_entropy(logits, batch.y)
        return (loss * float("nan") if len(calls) == 10 else loss), logits  # the 3rd batch of epoch 2

    with pytest.raises(TrainingDiverged, match=r"^train: the training loss is nan at epoch 2, batch 3; "):
        fit(model, mnist5k, loss_fn, lambda x: model(x.flatten(1)), epochs=3, batch_size=500, lr=1e-3)


# --------------------------------------------------------------------------------------- broken data roots
def _files(idx_root: Path, tmp_path: Path, without: str) -> Path:
    root = tmp_path / "root"
    shutil.copytree(idx_root / "mnist", root / "mnist")
    (root / "mnist" / without).unlink()
    return root


def _in_read_only_mount(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``root`` bind-mounted read-only in a private mount namespace (as root or not)."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux's unshare is needed to mount a read-only data root")
    script = f"mount --bind {root} {root} && mount -o remount,bind,ro {root} && exec {sys.executable} -c \"$0\""
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script, code], capture_output=True, text=True, timeout=300)
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        pytest.skip(f"cannot mount read-only here: {proc.stderr.strip()}")
    return proc


def test_a_read_only_root_with_a_missing_file(idx_root: Path, tmp_path: Path) -> None:
    root = _files(idx_root, tmp_path, "t10k-labels-idx1-ubyte.gz")
    code = textwrap.dedent(f"""
        from kdlib.core import data as D
        D.MNIST.mirrors = ["http://127.0.0.1:9/"]
        try:
            D.load_dataset("mnist", root={str(root)!r})
        except D.DatasetError as err:
            print("DatasetError:", err)
    """)
    proc = _in_read_only_mount(root, code)
    assert proc.returncode == 0, proc.stderr
    assert (f"DatasetError: {root}/mnist/t10k-labels-idx1-ubyte.gz is missing and cannot be downloaded there: "
            f"{root}/mnist is not writable (Read-only file system)") in proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_directory_where_an_archive_belongs(idx_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _files(idx_root, tmp_path, "train-labels-idx1-ubyte.gz")
    (root / "mnist" / "train-labels-idx1-ubyte.gz").mkdir()
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    monkeypatch.setattr(D.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    for download in (True, False):
        with pytest.raises(D.DatasetError, match=r"train-labels-idx1-ubyte.gz should be an IDX .gz file but is a "
                                                 r"directory or another non-file\. Remove it"):
            D.load_dataset("mnist", root=root, download=download)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before, "something was written"


def test_a_nonexistent_root_is_left_nonexistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    root = tmp_path / "no" / "such" / "root"
    with pytest.raises(D.DatasetError, match=r"is missing and could not be downloaded"):
        D.load_dataset("fashion-mnist", root=root)
    assert list(tmp_path.iterdir()) == [], "the failed download left folders behind"


# ----------------------------------------------------------------------------------------- failed writes
def test_a_failed_write_keeps_the_previous_output(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE) stands in for a full disk while a stage writes its checkpoint and metrics."""
    code = textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        import torch
        from kdlib.core import params as P
        from kdlib.core.io import WriteError, write_json
        from kdlib.snn.teachers import build_teacher, save_teacher
        out = Path({str(tmp_path)!r})
        cfg = P.quick_section("teacher", hidden=[8])
        save_teacher(out / "teacher.pt", build_teacher(cfg), cfg, "mnist-5k", 10, {{"test_accuracy": 0.25}})
        write_json(out / "metrics.json", {{"test_accuracy": 0.25}})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
        big = P.quick_section("teacher", hidden=[512])
        for write in (lambda: save_teacher(out / "teacher.pt", build_teacher(big), big, "mnist-5k", 10, {{}}),
                      lambda: write_json(out / "metrics.json", {{"history": list(range(100000))}})):
            try:
                write()
            except WriteError as err:
                print("WriteError:", err)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("WriteError:")]
    assert len(lines) == 2, proc.stdout
    for line, name in zip(lines, ("teacher.pt", "metrics.json"), strict=True):
        assert f"could not write {tmp_path / name} (" in line and "the previous file is kept" in line
    _, ckpt = load_teacher(tmp_path / "teacher.pt")
    assert ckpt["metrics"] == {"test_accuracy": 0.25} and ckpt["config"]["hidden"] == [8]
    assert read_json(tmp_path / "metrics.json") == {"test_accuracy": 0.25}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "teacher.pt"], "partial files left behind"


def test_write_json_into_an_unwritable_place_says_so(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(OSError, match="blocker"):
        write_json(tmp_path / "blocker" / "metrics.json", {})


# --------------------------------------------------------------------------------------- the IDX header
def test_idx_header_claims_more_dimensions_than_it_has(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 200, 0, 0])))
    with pytest.raises(D.DatasetError, match=r"x.gz has a broken IDX header \(200 dimensions, 6 bytes\)"):
        D._read_idx_gz(path)


def test_idx_archive_with_a_corrupt_deflate_stream(tmp_path: Path) -> None:
    archive = bytearray(gzip.compress(bytes(1000)))
    archive[12] ^= 0xFF  # inside the compressed data: zlib.error, which is not an OSError
    path = tmp_path / "x.gz"
    path.write_bytes(bytes(archive))
    with pytest.raises(D.DatasetError, match=r"x.gz is not a readable gzip archive"):
        D._read_idx_gz(path)


def test_idx_reader_reads_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))))
    assert np.array_equal(D._read_idx_gz(path), np.arange(6, dtype=np.uint8).reshape(2, 3))


# ----------------------------------------------------------------------------------- the training threads
def test_training_gives_the_same_weights_on_one_and_two_threads(mnist5k: D.Dataset) -> None:
    cfg = P.validate(TeacherParams, TINY["teacher"] | {"hidden": [256, 256], "max_shift": 1})
    weights = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            teacher = build_teacher(cfg)
            train_teacher(teacher, mnist5k, cfg)
            weights.append(teacher.state_dict())
    finally:
        torch.set_num_threads(threads)
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), f"{name} differs between 1 and 2 threads"


# ---------------------------------------------------------------------------------------------- netx files
LAVA_DL_NETS = Path(h5py.__file__).parent.parent / "tests" / "lava" / "lib" / "dl" / "netx"


def _netx_copy(tmp_path: Path, edit) -> Path:
    from kdlib.loihi.slayer import build_loihi_student

    path = build_loihi_student(P.quick_section("loihi", hidden=[8]), num_classes=3).export_hdf5(tmp_path / "net.net")
    with h5py.File(path, "r+") as handle:
        edit(handle["layer"])
    return path


def _retype(layer: h5py.Group, kind: str) -> None:
    del layer["type"]
    layer.create_dataset("type", data=np.array([kind.encode()], dtype="S10"))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda layers: _retype(layers["1"], "conv"), r"layer 1 is of type 'conv': the runner streams flat spike vectors"),
    (lambda layers: layers.move("1", "5"), r"layers must be named 0 to 1, found 0, 5"),
    (lambda layers: (layers["0"].__delitem__("shape"), layers["0"].create_dataset("shape", data=[200, 66, 3])),
     r"layer 0 is shaped \(200, 66, 3\), which does not hold its 8 weight rows"),
    (lambda layers: (layers["1"].__delitem__("weight"), layers["1"].create_dataset("weight", data=np.zeros((3, 9)))),
     r"layer 1 takes 9 inputs but what comes before it gives 8"),
    (lambda layers: layers["0"]["neuron"].__delitem__("type"), r"layer 0 has neuron type None"),
], ids=["conv", "names", "image-shaped", "mismatch", "neuron"])
def test_netx_files_the_runner_cannot_run_are_refused_up_front(tmp_path: Path, edit, message: str) -> None:
    from kdlib.loihi.deploy import NetxError, check_netx

    path = _netx_copy(tmp_path, edit)
    with pytest.raises(NetxError, match=rf"^{path}: {message}"):
        check_netx(path)


def test_the_workbooks_own_export_passes_the_check(tmp_path: Path) -> None:
    from kdlib.loihi.deploy import check_netx

    assert check_netx(_netx_copy(tmp_path, lambda layers: None)) == [784, 8, 3]


@pytest.mark.parametrize(("name", "message"), [
    ("mnist.net", "layer 0 is an Input block with neurons"),
    ("tiny.net", "layer 0 is an Input block with neurons"),
    ("gts/ntidigits/ntidigits.net", "layer 2 has synaptic delays"),
])
def test_lava_dls_own_networks_are_refused_with_the_reason(name: str, message: str) -> None:
    from kdlib.loihi.deploy import NetxError, check_netx

    path = LAVA_DL_NETS / name
    if not path.is_file():
        pytest.skip(f"lava-dl's test network {name} is not installed")
    with pytest.raises(NetxError, match=message):
        check_netx(path)


def test_run_lava_refuses_a_conv_network_before_lava_runs(tmp_path: Path) -> None:
    from kdlib.loihi.deploy import NetxError, run_lava

    path = _netx_copy(tmp_path, lambda layers: _retype(layers["0"], "conv"))
    with pytest.raises(NetxError, match=r"layer 0 is of type 'conv'"):
        run_lava(path, [torch.zeros(2, 1, 784)])


def test_a_users_own_lava_import_works_after_importing_kdlib_loihi() -> None:
    code = "import kdlib.loihi.deploy\nimport lava.magma.core.run_configs\nimport lava.lib.dl.netx\nprint('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
