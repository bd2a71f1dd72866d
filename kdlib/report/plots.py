"""Figures of the workbook, drawn with seaborn on one consistent theme."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


# ------------------------------------------------------------------------------------------------ one dataset's spikes
def steps_curves(curves: pd.DataFrame, teacher_accuracy: float, title: str = "") -> Figure:
    """Test accuracy against the time steps T per model (mean over seeds, a band from the lowest to the highest),
    the ANN teacher dotted (``curves``: :func:`kdlib.measure.study.accuracy_curves`)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.lineplot(data=curves, x="steps", y="accuracy", hue="model", marker="o", ax=ax, errorbar=("pi", 100))
    ax.axhline(teacher_accuracy, color="black", linestyle=":", label="ANN teacher")
    ax.set(xscale="log", xlabel="time steps T", ylabel="test accuracy", title=title)
    ax.xaxis.set_major_formatter(plt.ScalarFormatter())
    ax.legend(fontsize=7, ncols=2)
    return fig


def spikes_and_rates(costs: pd.DataFrame, rates: pd.DataFrame) -> Figure:
    """Spikes per image by layer and variant, beside the firing rate of every neuron by layer and variant
    (``costs``, ``rates``: :func:`kdlib.measure.study.spike_costs`)."""
    layer_cols = [c for c in costs if c.startswith("spikes_layer")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    by_layer = costs.melt(id_vars="variant", value_vars=layer_cols, var_name="layer", value_name="spikes")
    sns.barplot(data=by_layer, x="variant", y="spikes", hue="layer", ax=ax1)
    ax1.set(ylabel="spikes per image", xlabel="")
    ax1.tick_params(axis="x", rotation=45)
    sns.boxplot(data=rates, x="variant", y="rate", hue="layer", ax=ax2, fliersize=1)
    ax2.set(ylabel="firing rate (spikes per neuron per step)", xlabel="")
    ax2.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


ENERGY_PANELS = {"energy_45nm_nj": "45 nm CMOS", "energy_loihi_nj": "Loihi"}


def energy_pareto(energy: pd.DataFrame, fronts: dict[str, pd.DataFrame]) -> Figure:
    """Accuracy against energy per image of every model, one panel per estimate of :data:`ENERGY_PANELS`, with
    its Pareto front dashed (``fronts``: :func:`kdlib.measure.study.pareto_fronts`)."""
    fig, axes = plt.subplots(1, len(ENERGY_PANELS), figsize=(13, 4.5))
    for ax, (column, title) in zip(axes, ENERGY_PANELS.items(), strict=True):
        part = energy.dropna(subset=[column])
        sns.scatterplot(data=part, x=column, y="accuracy", hue="variant", style="variant", s=60, ax=ax)
        ax.plot(fronts[column][column], fronts[column]["accuracy"], color="grey", linestyle="--", zorder=0,
                label="Pareto front")
        ax.set(xscale="log", xlabel="energy per image (nJ)", ylabel="test accuracy", title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def energy_by_convention(conventions: pd.DataFrame, labels: dict[str, str], hardware: Sequence[str]) -> sns.FacetGrid:
    """One dataset's models under every cost table (a panel each, in the order of ``hardware``) and first-layer
    convention (a colour each, named by ``labels``), means over seeds; dashed, in a convention's colour: the ANN
    teacher under it (FP32 in the FP32 panel, INT8 elsewhere). ``conventions``:
    :func:`kdlib.measure.study.energy_conventions`; ``labels`` and ``hardware``:
    :data:`kdlib.measure.energy.CONVENTIONS` and :data:`kdlib.measure.energy.HARDWARE`."""
    summary = conventions.groupby(["model", "hardware", "convention"], sort=False, as_index=False)[
        ["accuracy", "energy_nj"]].mean()
    summary["convention"] = summary.convention.map(labels)
    grid = sns.relplot(data=summary, x="energy_nj", y="accuracy", hue="convention", hue_order=list(labels.values()),
                       col="hardware", col_order=list(hardware), col_wrap=2, height=3.8, aspect=1.5,
                       facet_kws={"sharex": False}, s=45)
    palette = dict(zip(labels.values(), sns.color_palette(n_colors=len(labels)), strict=True))
    for hardware, ax in grid.axes_dict.items():
        rival = "ANN teacher (FP32)" if hardware == "45 nm FP32" else "ANN teacher (INT8)"
        for _, t in summary[summary.model == rival].iterrows():
            if (summary[(summary.hardware == hardware) & (summary.convention == t.convention)]).shape[0]:
                ax.axvline(t.energy_nj, color=palette[t.convention], linestyle="--", linewidth=1)
        ax.set(xscale="log", xlabel="energy per image (nJ)", ylabel="test accuracy", title=hardware)
    return grid


def exit_curves(exits: pd.DataFrame) -> Figure:
    """Accuracy against the average steps per image over the exit thresholds, per variant (``exits``:
    :func:`kdlib.measure.study.early_exits`)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.lineplot(data=exits, x="mean_steps", y="accuracy", hue="variant", marker="o", errorbar=None, ax=ax)
    ax.set(xlabel="average time steps per image", ylabel="test accuracy")
    ax.legend(fontsize=7)
    return fig


def noise_curves(noise: pd.DataFrame) -> sns.FacetGrid:
    """Test accuracy against the noise level per model, one panel per corruption (``noise``:
    :func:`kdlib.measure.study.noise_robustness`)."""
    return sns.relplot(data=noise, x="level", y="accuracy", hue="model", col="corruption", kind="line", marker="o",
                       facet_kws={"sharex": False}, height=3.8, aspect=1.2)


# ------------------------------------------------------------------------------------------------ one dataset on Loihi
def spike_rasters(images: Tensor, labels: Sequence[int], predicted: Sequence[int], hidden: Sequence[np.ndarray],
                  readout: np.ndarray, steps: int) -> Figure:
    """A few images, one column each: the image, the spikes of every hidden layer (``hidden``: one (T, images,
    neurons) 0/1 array per layer), and the readout's value per class (``readout``, (images, classes))."""
    fig, axes = plt.subplots(2 + len(hidden), len(images), figsize=(12, 2.2 + 2.2 * (1 + len(hidden))), squeeze=False)
    for j in range(len(images)):
        axes[0, j].imshow(images[j, 0], cmap="gray_r")
        axes[0, j].set(title=f"label {int(labels[j])}, predicted {int(predicted[j])}", xticks=[], yticks=[])
        for i, train in enumerate(hidden):
            t, n = np.nonzero(train[:, j])
            ax = axes[1 + i, j]
            ax.scatter(t, n, s=3, marker=".", color=sns.color_palette()[i])
            ax.set(xlim=(-0.5, steps - 0.5), ylim=(-0.5, train.shape[2] - 0.5), xlabel="time step",
                   ylabel=f"hidden layer {i}" if j == 0 else None)
        ax = axes[-1, j]
        ax.bar(range(readout.shape[1]), readout[j], color=sns.color_palette()[3])
        ax.set(xlabel="class", ylabel="readout (T × logit)" if j == 0 else None, xticks=range(readout.shape[1]))
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------ the study report
def tuning_history(history: pd.DataFrame, variants: Sequence[str]) -> Figure:
    """Each study's best validation accuracy so far against the trial (:func:`kdlib.report.studies.history`), one
    panel per dataset."""
    n = history.dataset.nunique()
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 4.2), squeeze=False)
    for ax, (dataset, part) in zip(axes[0], history.groupby("dataset", sort=False), strict=True):
        for variant in [v for v in variants if v in set(part.variant)]:
            curve = part[part.variant == variant]
            ax.step(curve.number - curve.number.min(), curve.best_so_far, where="post", label=variant)
        ax.set(title=f"{dataset}: best validation accuracy so far", xlabel="trial", ylabel="validation accuracy")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    return fig


def importances(weights: pd.DataFrame) -> Figure:
    """fANOVA importances (rows: dataset and variant, columns: hyperparameters) as one heatmap per dataset."""
    n = weights.index.get_level_values(0).nunique()
    fig, axes = plt.subplots(1, n, squeeze=False, figsize=(6.5 * n, 0.45 * len(weights) + 1.5))
    for ax, (dataset, part) in zip(axes[0], weights.groupby(level=0, sort=False), strict=True):
        sns.heatmap(part.droplevel(0), annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", cbar=False, ax=ax)
        ax.set(title=f"{dataset}: hyperparameter importance (fANOVA)", xlabel="", ylabel="")
    return fig


def energy_conventions(conventions: pd.DataFrame, datasets: Sequence[str], labels: dict[str, str],
                       hardware: Sequence[str], measured: Any = None) -> sns.FacetGrid:
    """Accuracy against energy per image, one panel per dataset and cost table (``hardware``, in order), coloured by
    the convention for the first layer's input (``labels``: convention → label); dashed lines: the ANN teacher (FP32
    in the FP32 panel, INT8 elsewhere); a cross: a ``measured`` network (:class:`kdlib.measure.energy.Measured`) on
    its dataset's Loihi panels."""
    from matplotlib.ticker import NullFormatter

    points = conventions.groupby(["dataset", "model", "hardware", "convention"], sort=False, as_index=False)[
        ["accuracy", "energy_nj"]].mean()
    points["input"] = points.convention.map(labels)
    kinds = {"ANN teacher": "ANN teacher", " on Loihi": "deployed student, in Lava"}
    points["model kind"] = [next((k for key, k in kinds.items() if key in m), "SNN student") for m in points.model]
    palette = dict(zip(labels.values(), sns.color_palette(n_colors=len(labels)), strict=True))
    grid = sns.relplot(data=points, x="energy_nj", y="accuracy", hue="input", hue_order=list(labels.values()),
                       palette=palette, style="model kind", markers=["o", "D", "*"],
                       style_order=["SNN student", "ANN teacher", "deployed student, in Lava"],
                       row="dataset", row_order=[d for d in datasets if d in set(points.dataset)],
                       col="hardware", col_order=list(hardware), height=3.0, aspect=1.15, s=55,
                       facet_kws={"sharex": False, "sharey": "row"})
    for (dataset, panel), ax in grid.axes_dict.items():
        rival = "45 nm FP32" if panel == "45 nm FP32" else "45 nm INT8"
        shown_here = set(points[(points.dataset == dataset) & (points.hardware == panel)].input)
        for _, t in points[(points.dataset == dataset) & (points.hardware == rival)
                           & (points["model kind"] == "ANN teacher")].iterrows():
            if t.input in shown_here:
                ax.axvline(t.energy_nj, color=palette[t.input], linestyle="--", linewidth=1)
        if measured is not None and dataset == measured.dataset and panel.startswith("Loihi"):
            ax.scatter(measured.energy_nj, measured.accuracy, marker="X", s=80, color="black")
            ax.annotate("Renner et al. 2024,\nmeasured", (measured.energy_nj, measured.accuracy),
                        textcoords="offset points", xytext=(6, 4), fontsize=7)
        ax.set(xscale="log", title=f"{dataset}: {panel}")
        ax.xaxis.set_minor_formatter(NullFormatter())
    grid.set_axis_labels("energy per image (nJ)", "test accuracy")
    return grid


VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red", "no detectable difference": "grey"}


def comparisons(table: pd.DataFrame) -> Figure | None:
    """The accuracy rows of :func:`kdlib.measure.stats.compare_variants`: each variant's difference from a baseline
    with its 95 % interval, coloured by verdict, one panel per dataset and baseline (None: nothing compared)."""
    part = table[table.measure == "accuracy"].assign(
        difference=lambda t: 100 * t.difference, low=lambda t: 100 * t.low, high=lambda t: 100 * t.high)
    panels = list(part.groupby(["dataset", "baseline"], sort=False))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False, sharey=False)
    for ax, ((dataset, baseline), rows) in zip(axes[0], panels, strict=True):
        y = range(len(rows))
        for i, (_, r) in zip(y, rows.iterrows(), strict=True):
            ax.errorbar(r.difference, i, xerr=[[r.difference - r.low], [r.high - r.difference]], fmt="o",
                        color=VERDICT_COLOURS[r.verdict], capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(yticks=list(y), yticklabels=list(rows.variant), title=f"{dataset}: against {baseline}",
               xlabel="test accuracy difference (points, 95 % CI)")
        ax.invert_yaxis()
    fig.tight_layout()
    return fig


def _front_panel(ax: plt.Axes, part: pd.DataFrame, norm: Any) -> Any:
    """One dataset's fronts: KD's points coloured by τ_S / τ_T and labelled τ_T/τ_S, rate_reg's line over λ."""
    kd_part = part[part.kind != "rate_reg"]
    ratio = kd_part.tau_student / kd_part.tau_teacher
    for kind, marker in (("kd", "s"), ("hetero_kd", "o")):
        rows = kd_part.kind == kind
        points = ax.scatter(kd_part.spikes_per_image[rows], kd_part.val_accuracy[rows], c=ratio[rows],
                            cmap="viridis", norm=norm, marker=marker, s=60, edgecolor="black", linewidth=0.5,
                            label="plain KD (τ_S = τ_T)" if kind == "kd" else "heterogeneous KD (τ_S < τ_T)")
    for _, r in kd_part.iterrows():
        ax.annotate(f"{r.tau_teacher:g}/{r.tau_student:g}", (r.spikes_per_image, r.val_accuracy), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    rate = part[part.kind == "rate_reg"].sort_values("rate_lambda")
    if len(rate):
        ax.plot(rate.spikes_per_image, rate.val_accuracy, "^--", color="tab:red", label="rate_reg (λ)")
        for _, r in rate.iterrows():
            ax.annotate(f"λ={r.rate_lambda:g}", (r.spikes_per_image, r.val_accuracy), fontsize=7, color="tab:red",
                        xytext=(4, -9), textcoords="offset points")
    low = kd_part.val_accuracy.min() - 0.01  # KD's front readable: a collapsed penalty is named, not drawn
    below = rate[rate.val_accuracy < low]
    if len(below):
        ax.text(0.02, 0.97, "below the axis:\n" + "\n".join(  # top left: the legend sits bottom right
            f"λ={r.rate_lambda:g} ({100 * r.val_accuracy:.1f} %, {r.spikes_per_image:,.0f} spikes)"
            for _, r in below.iterrows()), transform=ax.transAxes, fontsize=7, color="tab:red", va="top")
    ax.set_ylim(low, kd_part.val_accuracy.max() + 0.004)
    ax.set(title=f"{part.dataset.iloc[0]}: fronts (labels τ_T/τ_S)", xlabel="hidden spikes per validation image",
           ylabel="validation accuracy")
    ax.legend(fontsize=8, loc="lower right")
    return points


def fronts(front: pd.DataFrame) -> Figure:
    """The front stage's points (:func:`kdlib.report.studies.fronts`), one panel per dataset."""
    datasets = list(dict.fromkeys(front.dataset))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.8 * len(datasets), 4.6), squeeze=False,
                             layout="constrained")
    norm = plt.matplotlib.colors.LogNorm((front.tau_student / front.tau_teacher).min(), 1.0)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        points = _front_panel(ax, front[front.dataset == dataset], norm)
    fig.colorbar(points, ax=axes[0].tolist(), label="τ_S / τ_T")
    return fig


def accuracy_spikes(students: pd.DataFrame, variants: Sequence[str]) -> Figure:
    """Test accuracy against spikes per test image, one point per trained student, one panel per dataset."""
    datasets = list(dict.fromkeys(students.dataset))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        part = students[students.dataset == dataset]
        sns.scatterplot(data=part, x="spikes_per_image.total", y="test_accuracy", hue="variant", style="variant",
                        hue_order=variants, s=70, ax=ax)
        ax.set(title=dataset, xlabel="spikes per test image", ylabel="test accuracy")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _order(models: pd.Series, variants: Sequence[str]) -> list[str]:
    """The variants in the study's order, then any other model (a baseline) by name."""
    return [*variants, *sorted(set(models) - set(variants))]


def accuracy_steps(steps: pd.DataFrame, teachers: pd.Series, variants: Sequence[str]) -> sns.FacetGrid:
    """Mean test accuracy against the time steps read out, per model, one panel per dataset; dashed: the teacher
    (``teachers``: test accuracy by dataset)."""
    curve = steps.groupby(["dataset", "model", "steps"], as_index=False).accuracy.mean()
    grid = sns.relplot(data=curve, x="steps", y="accuracy", hue="model", hue_order=_order(curve.model, variants),
                       col="dataset", kind="line", marker="o", facet_kws={"sharey": False}, height=3.6, aspect=1.4)
    grid.set(xscale="log", ylim=(0.8, 1.0))
    for dataset, ax in grid.axes_dict.items():
        ax.axhline(teachers[dataset], color="grey", ls="--", lw=1)
        ax.set_title(f"{dataset} (dashed: ANN teacher)")
    return grid


def early_exit(exits: pd.DataFrame, variants: Sequence[str]) -> sns.FacetGrid:
    """Accuracy against the average steps per image over the exit thresholds (means over seeds), per dataset."""
    grid = sns.relplot(data=exits, x="mean_steps", y="accuracy", hue="variant", hue_order=variants, col="dataset",
                       kind="line", marker="o", sort=False, facet_kws={"sharey": False}, height=3.6, aspect=1.3)
    grid.set_axis_labels("average time steps per image", "test accuracy")
    grid.set_titles("{col_name}: early exit")
    return grid


def noise(table: pd.DataFrame, variants: Sequence[str]) -> sns.FacetGrid:
    """Mean test accuracy against the noise level, per model, one panel per dataset and corruption."""
    grid = sns.relplot(data=table, x="level", y="accuracy", hue="model", hue_order=_order(table.model, variants),
                       row="dataset", col="corruption", kind="line", marker="o", facet_kws={"sharex": False},
                       height=3.2, aspect=1.4)
    grid.set_axis_labels("noise level", "test accuracy")
    grid.set_titles("{row_name}: {col_name}")
    return grid


def validation_curves(curves: pd.DataFrame, variants: Sequence[str]) -> sns.FacetGrid:
    """Validation accuracy per epoch and variant (mean over seeds with their spread), one panel per dataset."""
    grid = sns.relplot(data=curves, x="epoch", y="val_accuracy", hue="variant", col="dataset", kind="line",
                       hue_order=variants, facet_kws={"sharey": False}, height=3.8, aspect=1.3)
    grid.set_axis_labels("epoch", "validation accuracy")
    return grid
