"""What every figure shares: figures made without pyplot (no figure manager or
screen, nothing to close, a tenth of a second less to import), the weights as
images drawn one way, loss and accuracy curves, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..core.training import SPLITS, History
from .run_figures import WEIGHT_COLORS

LOSS_LABEL = "mean cross-entropy (nats)"
SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """``pyplot.subplots`` for a figure that is only saved: (figure, axes)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def draw_weights(ax, image: np.ndarray, limit: float | None = None):
    """One weight image, colours symmetric about zero up to ``limit`` (default: the
    image's own largest magnitude), one block per pixel; returns the mappable."""
    limit = limit or float(np.abs(image).max()) or 1.0
    shown = ax.imshow(
        image, cmap=WEIGHT_COLORS, vmin=-limit, vmax=limit, interpolation="nearest"
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def draw_curves(ax_loss, ax_acc, history: History, unit: str = "epoch") -> None:
    """Loss and accuracy per epoch of the three splits, the best epoch marked
    (``unit``: the x axis's name; "iteration" where an epoch is one step)."""
    draw_split_curves(ax_loss, history, "loss", unit)
    draw_split_curves(ax_acc, history, "accuracy", unit)


def draw_split_curves(ax, history: History, metric: str, unit: str = "epoch") -> None:
    """One quantity (``loss`` or ``accuracy``) of the three splits per epoch
    (``unit``), the epoch of the kept weights marked."""
    for split in SPLITS:
        values = np.asarray(history.metrics[f"{split}_{metric}"])
        if metric == "accuracy":
            values = 100 * values
        ax.plot(history.epoch, values, label=split, color=SPLIT_COLORS[split])
    ax.axvline(history.best_epoch, color="grey", ls=":", label=f"kept {unit}")
    ax.set_xlabel(unit)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_ylabel(LOSS_LABEL if metric == "loss" else "accuracy (%)")


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def sweep_figure(labelled: list[tuple[str, History]], title: str):
    """Validation loss and accuracy per epoch of each job of a sweep."""
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(11, 4.2))
    for label, history in labelled:
        (line,) = ax_loss.plot(history.epoch, history.metrics["val_loss"], label=label)
        accuracy = 100 * np.asarray(history.metrics["val_accuracy"])
        ax_acc.plot(history.epoch, accuracy, color=line.get_color())
        best = history.epoch.index(history.best_epoch)
        ax_acc.plot(history.best_epoch, accuracy[best], "o", color=line.get_color())
    ax_loss.set_ylabel(f"validation {LOSS_LABEL}")
    ax_acc.set_ylabel("validation accuracy (%), best epoch marked")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=7, ncol=1 + len(labelled) // 8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
