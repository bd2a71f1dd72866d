"""Figures of the workbook, drawn with seaborn on one consistent theme."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from torch import Tensor


def setup() -> None:
    """The workbook's plotting theme (call once per notebook)."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams["figure.dpi"] = 100


def learning_curves(history: pd.DataFrame, title: str = "") -> Figure:
    """Training loss and train/validation accuracy per epoch, from :class:`kdlib.core.train.FitResult`'s history.

    A history of several runs (rows repeating an epoch, e.g. one per seed) is drawn as the mean with a
    band from the lowest to the highest run."""
    spread = ("pi", 100)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    sns.lineplot(data=history, x="epoch", y="train_loss", marker="o", errorbar=spread, ax=ax_loss)
    ax_loss.set(ylabel="training loss", yscale="log")
    acc = history.melt(id_vars="epoch", value_vars=["train_accuracy", "val_accuracy"],
                       var_name="split", value_name="accuracy")
    acc["split"] = acc["split"].str.replace("_accuracy", "")
    sns.lineplot(data=acc, x="epoch", y="accuracy", hue="split", marker="o", errorbar=spread, ax=ax_acc)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(labels: Tensor, predictions: Tensor, classes: Sequence[str]) -> tuple[Figure, np.ndarray]:
    """Row-normalised confusion matrix (rows: true class), and the raw counts."""
    k = len(classes)
    counts = torch.bincount(labels * k + predictions, minlength=k * k).reshape(k, k).numpy()
    rates = counts / counts.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sns.heatmap(rates * 100, annot=True, fmt=".1f", cmap="Blues", cbar_kws={"label": "% of true class"},
                xticklabels=classes, yticklabels=classes, ax=ax, annot_kws={"fontsize": 7})
    ax.set(xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return fig, counts


def image_grid(x: Tensor, labels: Sequence[str], ncols: int = 10) -> Figure:
    """A grid of images with their labels as titles."""
    n = len(x)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 1.0, nrows * 1.2))
    for i, ax in enumerate(np.atleast_1d(axes).flat):
        ax.axis("off")
        if i < n:
            ax.imshow(x[i].squeeze(0).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(labels[i], fontsize=7)
    fig.tight_layout()
    return fig


def spikes_by_layer(runs: Sequence[dict[str, float]]) -> Figure:
    """Bar chart of spikes per image for each spiking layer (``total`` entries are left out), from one
    ``spikes_per_image`` dict per run; several runs give the mean and a bar from the lowest to the highest."""
    frame = pd.DataFrame([(k, v) for run in runs for k, v in run.items() if k != "total"], columns=["layer", "spikes"])
    total = np.mean([run.get("total", sum(v for k, v in run.items() if k != "total")) for run in runs])
    fig, ax = plt.subplots(figsize=(5, 3))
    sns.barplot(data=frame, x="layer", y="spikes", errorbar=("pi", 100), ax=ax)
    mean_of = f", mean of {len(runs)} runs" if len(runs) > 1 else ""
    ax.set(ylabel="spikes per image", title=f"{total:,.0f} in total{mean_of}")
    fig.tight_layout()
    return fig
