"""Each run's own figures, logged to MLflow: its weights as images, its curves."""

from __future__ import annotations

import math
from pathlib import Path

from .drawing import draw_curves, draw_weights, plt, weight_images
from .models import LinearModel
from .training import History


def save_weight_pngs(model: LinearModel, labels: list[str], directory: Path) -> None:
    """One PNG per class: the weights as an image at least 240 px high (one block
    per pixel), diverging colours centred on zero, with their colour bar."""
    from matplotlib.figure import Figure

    directory.mkdir(parents=True, exist_ok=True)
    for image, label in zip(weight_images(model), labels, strict=True):
        fig = Figure(figsize=(3.6, 3.0), dpi=100)
        ax = fig.add_axes((0.01, 0.01, 0.8, 0.88))
        shown = draw_weights(ax, image)
        ax.set_axis_off()
        ax.set_title(f"weights of {label}", fontsize=9)
        fig.colorbar(shown, ax=ax, fraction=0.07, pad=0.02)
        fig.savefig(directory / f"{label}.png")


def weights_figure(model: LinearModel, labels: list[str], title: str):
    """Every class's weights on one colour scale."""
    images = weight_images(model)
    cols = min(len(images), 5)
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False
    )
    limit = float(abs(images).max()) or 1.0
    for ax, image, label in zip(axes.flat, images, labels, strict=False):
        shown = draw_weights(ax, image, limit)
        ax.set_title(label)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes, shrink=0.8, label="weight")
    fig.suptitle(title)
    return fig


def curves_figure(history: History, title: str):
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    draw_curves(ax_loss, ax_acc, history)
    ax_acc.set_ylim(max(0, ax_acc.get_ylim()[0]), 100)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
