"""The ANN teachers: their architectures, their checkpoints and their training.

Every teacher returns a :class:`ModelOutput`: the logits and the hidden activations that feature
distillation uses (the post-ReLU activations of each hidden layer). :func:`train_teacher` trains one with
cross-entropy in the workbook's one loop (:func:`kdlib.core.train.fit`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from kdlib.core.data import Batch, Dataset
from kdlib.core.io import load_model, save_torch
from kdlib.core.params import PIXELS, TeacherParams
from kdlib.core.train import FitResult, fit


class ModelOutput(NamedTuple):
    """``logits`` (B, classes) and ``features``: one tensor per hidden layer, batch first."""

    logits: Tensor
    features: list[Tensor]


class MLPTeacher(nn.Module):
    """Fully connected ReLU network with dropout (the teacher of Hinton et al., "Distilling the
    Knowledge in a Neural Network", 784-1200-1200-10)."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int, *, dropout: float) -> None:
        super().__init__()
        widths = (in_features, *hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: Tensor) -> ModelOutput:
        h = x.flatten(1)
        features = []
        for layer in self.hidden:
            h = torch.relu(layer(h))
            features.append(h)
            h = self.dropout(h)
        return ModelOutput(self.head(h), features)

    def hidden_widths(self) -> list[int]:
        """Units per hidden layer (the length of each flattened feature)."""
        return [layer.out_features for layer in self.hidden]


class CNNTeacher(nn.Module):
    """Two 3×3 convolution blocks (each conv-ReLU-maxpool) and one dense hidden layer."""

    def __init__(self, hidden: int, num_classes: int, *, dropout: float, in_channels: int = 1,
                 channels: tuple[int, int] = (32, 64), image_size: int = 28) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc = nn.Linear(c2 * (image_size // 4) ** 2, hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)
        self._size = image_size

    def forward(self, x: Tensor) -> ModelOutput:
        h1 = torch.relu(self.conv1(x))
        h2 = torch.relu(self.conv2(nn.functional.max_pool2d(h1, 2)))
        h3 = torch.relu(self.fc(nn.functional.max_pool2d(h2, 2).flatten(1)))
        return ModelOutput(self.head(self.dropout(h3)), [h1, h2, h3])

    def hidden_widths(self) -> list[int]:
        """Units per hidden layer (the length of each flattened feature)."""
        c1, c2, size = self.conv1.out_channels, self.conv2.out_channels, self._size
        return [c1 * size * size, c2 * (size // 2) ** 2, self.fc.out_features]


def build_teacher(cfg: TeacherParams, num_classes: int = 10) -> nn.Module:
    """The teacher described by ``cfg`` (weights initialised from ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    if cfg.arch == "mlp":
        return MLPTeacher(PIXELS, tuple(cfg.hidden), num_classes, dropout=cfg.dropout)
    if len(cfg.hidden) != 1:
        raise ValueError(f"teacher.hidden must have one width for arch 'cnn', got {cfg.hidden}")
    return CNNTeacher(cfg.hidden[0], num_classes, dropout=cfg.dropout)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_teacher(path: str | Path, model: nn.Module, cfg: TeacherParams, dataset: str, num_classes: int,
                 metrics: dict[str, Any]) -> None:
    """Write a teacher checkpoint (weights, the parameters that built it, its metrics), atomically."""
    save_torch(path, {
        "kind": "teacher", "dataset": dataset, "num_classes": num_classes, "config": cfg.model_dump(),
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "metrics": metrics,
    })


def load_teacher(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a teacher from :func:`save_teacher`'s file; returns the model (eval mode) and the checkpoint."""
    return load_model(path, "teacher", lambda ckpt: build_teacher(TeacherParams(**ckpt["config"]),
                                                                  ckpt["num_classes"]))


def train_teacher(model: nn.Module, data: Dataset, cfg: TeacherParams, device: torch.device | None = None) -> FitResult:
    """Train an ANN teacher with cross-entropy."""

    def loss_fn(batch: Batch) -> tuple[Tensor, Tensor]:
        logits = model(batch.x).logits
        return nn.functional.cross_entropy(logits, batch.y), logits

    return fit(
        model, data, loss_fn, lambda x: model(x).logits, epochs=cfg.epochs, batch_size=cfg.batch_size,
        lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed, max_shift=cfg.max_shift,
        desc=f"teacher {data.name}", device=device,
    )
