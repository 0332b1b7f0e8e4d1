"""Figures, drawn with matplotlib's Agg backend so they render without a screen."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .models import LinearModel  # noqa: E402
from .training import SPLITS, History  # noqa: E402

LOSS_LABEL = "mean cross-entropy (nats)"
SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def weight_images(model: LinearModel) -> np.ndarray:
    """The weights as (k, side, side) images: one per class, one for logistic."""
    n_features, k = model.weights.shape
    side = math.isqrt(n_features)
    return model.weights.T.reshape(k, side, side)


def save_weight_pngs(model: LinearModel, labels: list[str], directory: Path) -> None:
    """One PNG per class: the weights as an image at least 240 px high (one block
    per pixel), diverging colours centred on zero, with their colour bar."""
    from matplotlib.figure import Figure

    directory.mkdir(parents=True, exist_ok=True)
    for image, label in zip(weight_images(model), labels, strict=True):
        limit = float(np.abs(image).max()) or 1.0
        fig = Figure(figsize=(3.6, 3.0), dpi=100)
        ax = fig.add_axes((0.01, 0.01, 0.8, 0.88))
        shown = ax.imshow(
            image, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
        )
        ax.set_axis_off()
        ax.set_title(f"weights of {label}", fontsize=9)
        fig.colorbar(shown, ax=ax, fraction=0.07, pad=0.02)
        fig.savefig(directory / f"{label}.png")


def weights_figure(model: LinearModel, labels: list[str], title: str):
    images = weight_images(model)
    cols = min(len(images), 5)
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False
    )
    limit = float(np.abs(images).max()) or 1.0
    for ax, image, label in zip(axes.flat, images, labels, strict=False):
        shown = ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(label)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes, shrink=0.8, label="weight")
    fig.suptitle(title)
    return fig


def draw_curves(ax_loss, ax_acc, history: History) -> None:
    """Loss and accuracy per epoch of the three splits, the best epoch marked."""
    for split in SPLITS:
        color = SPLIT_COLORS[split]
        ax_loss.plot(
            history.epoch, history.metrics[f"{split}_loss"], label=split, color=color
        )
        accuracy = 100 * np.asarray(history.metrics[f"{split}_accuracy"])
        ax_acc.plot(history.epoch, accuracy, label=split, color=color)
    for ax in (ax_loss, ax_acc):
        ax.axvline(history.best_epoch, color="grey", ls=":", label="best epoch")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_ylabel(LOSS_LABEL)
    ax_acc.set_ylabel("accuracy (%)")


def curves_figure(history: History, title: str):
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    draw_curves(ax_loss, ax_acc, history)
    ax_acc.set_ylim(max(0, ax_acc.get_ylim()[0]), 100)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
