"""Teachers and the training loop: shapes, determinism, checkpoint selection, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
import torch
from pydantic import Field

from kdlib.core import params as P
from kdlib.core.data import Dataset, Split
from kdlib.core.train import accuracy, predict
from kdlib.snn.teachers import build_teacher, count_parameters, load_teacher, save_teacher, train_teacher

CPU = torch.device("cpu")


def _small(ds: Dataset, n: int = 1000) -> Dataset:
    """``n`` training images of every class (the mnist-5k training split is ordered by class)."""
    idx = torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(0))[:n]
    return Dataset(ds.name, ds.classes, Split(ds.train.x[idx], ds.train.y[idx]), ds.val, ds.test)


@pytest.mark.parametrize(("arch", "hidden", "shapes"), [
    ("mlp", [64, 32], [(5, 64), (5, 32)]),
    ("cnn", [48], [(5, 32, 28, 28), (5, 64, 14, 14), (5, 48)]),
])
def test_teacher_outputs_and_features(arch: str, hidden: list[int], shapes: list[tuple[int, ...]]) -> None:
    model = build_teacher(P.quick_section("teacher", arch=arch, hidden=hidden), num_classes=10).eval()
    out = model(torch.rand(5, 1, 28, 28))
    assert out.logits.shape == (5, 10)
    assert [tuple(f.shape) for f in out.features] == shapes
    assert all((f >= 0).all() for f in out.features)  # post-ReLU activations


def test_teacher_init_is_seeded() -> None:
    a, b = (build_teacher(P.quick_section("teacher", hidden=[32], seed=3)) for _ in range(2))
    c = build_teacher(P.quick_section("teacher", hidden=[32], seed=4))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.head.weight, c.head.weight)
    assert count_parameters(a) == 784 * 32 + 32 + 32 * 10 + 10


def test_training_learns_and_is_deterministic(mnist5k: Dataset) -> None:
    cfg = P.quick_section("teacher", hidden=[64], epochs=3, batch_size=50, lr=3e-3, max_shift=1, seed=1)
    runs = []
    for _ in range(2):
        model = build_teacher(cfg)
        result = train_teacher(model, _small(mnist5k), cfg, CPU)
        runs.append((model, result))
    (m1, r1), (m2, r2) = runs
    assert [h["val_accuracy"] for h in r1.history] == [h["val_accuracy"] for h in r2.history]
    assert [h["train_loss"] for h in r1.history] == [h["train_loss"] for h in r2.history]
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters(), strict=True))
    assert r1.best_val_accuracy > 0.75  # chance is 0.1
    # the model holds the selected epoch's weights
    val = accuracy(predict(lambda x: m1(x).logits, mnist5k.val, device=CPU), mnist5k.val.y)
    assert val == r1.best_val_accuracy == max(h["val_accuracy"] for h in r1.history)
    assert r1.history[r1.best_epoch - 1]["val_accuracy"] == r1.best_val_accuracy


def test_resume_after_interruption_matches_uninterrupted_run(mnist5k: Dataset, tmp_path: Path) -> None:
    cfg = P.quick_section("teacher", hidden=[32], epochs=3, batch_size=100, seed=2)
    data = _small(mnist5k, 500)
    straight = build_teacher(cfg)
    r_straight = train_teacher(straight, data, cfg, CPU)

    state = tmp_path / "state.pt"
    interrupted = build_teacher(cfg)
    calls = {"n": 0}
    original_forward = interrupted.forward

    def failing_forward(x: torch.Tensor):  # dies in the middle of epoch 2 (5 batches per epoch)
        calls["n"] += 1
        if interrupted.training and calls["n"] == 8:
            raise KeyboardInterrupt
        return original_forward(x)

    interrupted.forward = failing_forward  # type: ignore[method-assign]
    from kdlib.core.train import fit

    def run(model: torch.nn.Module):
        def loss_fn(batch):
            logits = model(batch.x).logits
            return torch.nn.functional.cross_entropy(logits, batch.y), logits
        return fit(model, data, loss_fn, lambda x: model(x).logits, epochs=3, batch_size=100, lr=cfg.lr,
                   seed=cfg.seed, resume_path=state, device=CPU)

    with pytest.raises(KeyboardInterrupt):
        run(interrupted)
    assert len(torch.load(state, weights_only=False)["history"]) == 1  # the last complete epoch
    resumed = build_teacher(P.quick_section("teacher", hidden=[32], seed=99))  # weights come from the state file
    r_resumed = run(resumed)
    assert [h["val_accuracy"] for h in r_resumed.history] == [h["val_accuracy"] for h in r_straight.history]
    assert all(torch.equal(p, q) for p, q in zip(straight.parameters(), resumed.parameters(), strict=True))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    cfg = P.quick_section("teacher", hidden=[16, 8], seed=5)
    model = build_teacher(cfg).eval()
    save_teacher(tmp_path / "t.pt", model, cfg, "mnist-5k", 10, {"test_accuracy": 0.5})
    loaded, ckpt = load_teacher(tmp_path / "t.pt")
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded(x).logits, model(x).logits)
    assert ckpt["metrics"] == {"test_accuracy": 0.5} and ckpt["dataset"] == "mnist-5k"
    assert [p.name for p in tmp_path.iterdir()] == ["t.pt"]  # no temporary file left
    with pytest.raises(FileNotFoundError, match="run the teacher stage first"):
        load_teacher(tmp_path / "missing.pt")


@pytest.mark.parametrize("entry", [
    {"loss": "bidirectional_kd", "alpha": 0.5, "tau_teacher": 2.0, "tau_student": 2.0, "beta": 1.0, "layers": [0, 1],
     "gamma": 0.5, "teacher_lr": 1e-4},
    {"loss": "decoder_kd", "alpha": 0.5, "tau_teacher": 2.0, "tau_student": 2.0, "beta": 1.0, "layers": [0, 1]},
], ids=["teacher-fine-tuned", "teacher-outputs-shared"])
@pytest.mark.slow  # trains the seeds in worker processes
def test_parallel_seeds_train_the_same_students_as_one_at_a_time(mnist5k: Dataset, tmp_path: Path,
                                                                 entry: dict) -> None:
    """Seeds trained side by side in worker processes (one thread each) give the students, metrics and
    histories of a sequential run: for a variant that fine-tunes its teacher, and for one whose frozen teacher's
    outputs (logits and hidden layers) the workers map from one file written on all threads."""
    from kdlib.core import params as P
    from kdlib.snn.students import load_student
    from kdlib.stages.workers import distill_seeds

    teacher_cfg = P.quick_section("teacher", hidden=[32, 32], epochs=1, batch_size=100)
    save_teacher(tmp_path / "teacher.pt", build_teacher(teacher_cfg), teacher_cfg, "mnist-5k", 10, {})
    data_cfg = P.quick().data
    cfg = P.quick_section("student", hidden=[24, 24], steps=3, epochs=1, batch_size=100)
    spec = P.notebook_variant(entry, "bidi")
    runs = {}
    for workers in (1, 2):
        runs[workers] = distill_seeds("mnist-5k", data_cfg, cfg, "bidi", spec, [0, 1], workers=workers,
                                      teacher_path=tmp_path / "teacher.pt",
                                      checkpoint=lambda s, w=workers: tmp_path / f"w{w}" / f"seed{s}.pt")
    for one, two in zip(runs[1], runs[2], strict=True):
        assert {**one.metrics, "train_seconds": 0, "train_images_per_second": 0} == \
               {**two.metrics, "train_seconds": 0, "train_images_per_second": 0}
        assert [{**h, "seconds": 0} for h in one.history] == [{**h, "seconds": 0} for h in two.history]
    assert [r.metrics["seed"] for r in runs[2]] == [0, 1]
    for seed in (0, 1):
        a, ckpt_a = load_student(tmp_path / "w1" / f"seed{seed}.pt")
        b, ckpt_b = load_student(tmp_path / "w2" / f"seed{seed}.pt")
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q), name
        if entry["loss"] == "bidirectional_kd":
            for p, q in zip(ckpt_a["teacher_state_dict"].values(), ckpt_b["teacher_state_dict"].values(),
                            strict=True):
                assert torch.equal(p, q)


def test_a_new_method_is_one_registered_class_and_one_params_entry(mnist5k: Dataset, tmp_path: Path) -> None:
    """A distillation method that the workbook does not ship: its objective class (with its parameters' schema)
    registered, one entry under ``variants`` with its search space under ``tune.space``, and the distillation
    stage's runner trains and saves it."""
    import torch.nn.functional as F
    import yaml

    from kdlib.kd import losses as L
    from kdlib.kd.trial import distill_seed
    from kdlib.snn.students import load_student

    @L.register
    class LogitMatching(L.Objective):
        """CE + weight · MSE(z_S, z_T): the student's logits regressed onto the teacher's."""

        class Params(P.VariantParams):
            loss: Literal["logit_mse"]
            weight: float = Field(ge=0.0)

        loss = "logit_mse"
        uses_teacher = True

        def __init__(self, weight: float) -> None:
            super().__init__()
            self.weight = weight

        @classmethod
        def from_variant(cls, variant, shapes):
            return cls(variant.weight)

        def forward(self, out, labels, teacher):
            ce = F.cross_entropy(out.logits, labels)
            mse = F.mse_loss(out.logits, teacher.logits)
            return ce + self.weight * mse, {"ce": ce.detach(), "mse": mse.detach()}

    try:
        raw = yaml.safe_load(P.QUICK_FILE.read_text())
        raw["variants"]["logits"] = {"loss": "logit_mse", "weight": 0.5}
        raw["distill"]["variants"].append("logits")
        raw["tune"]["space"]["logits"] = {"lr": [1.0e-3, 1.0e-2, "log"], "weight": [0.1, 1.0]}  # its search
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
        params = P.load(tmp_path / "params.yaml")
        spec = params.variants["logits"]
        assert isinstance(spec, LogitMatching.Params) and spec.model_dump()["weight"] == 0.5

        raw["variants"]["logits"]["weight"] = -1.0
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
        with pytest.raises(P.ParamsError, match=r"^bad.yaml: variants.logits.weight = -1.0:"):
            P.load(tmp_path / "bad.yaml")

        teacher_cfg = params.teacher
        save_teacher(tmp_path / "teacher.pt", build_teacher(teacher_cfg), teacher_cfg, "mnist-5k", 10, {})
        cfg = P.student_for(params.student, params.variants, "logits", "mnist-5k")
        run = distill_seed("mnist-5k", params.data, cfg, "logits", spec, 0, teacher_path=tmp_path / "teacher.pt",
                           checkpoint=tmp_path / "seed0.pt", device=CPU)
        assert run.metrics["variant"] == "logits" and 0.1 < run.metrics["test_accuracy"] <= 1.0
        _, ckpt = load_student(tmp_path / "seed0.pt")
        assert ckpt["variant"] == {"loss": "logit_mse", "student": {}, "per_step": False, "weight": 0.5}
    finally:
        del L.OBJECTIVES["logit_mse"], P.VARIANTS["logit_mse"]
    with pytest.raises(P.ParamsError, match="logit_mse"):
        P.load(tmp_path / "params.yaml")
