"""The study's figures for results.md, from the jobs of the training stages."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from ..app.results import Job
from ..core.models import LinearModel, curvature_at_zero
from ..core.objective import Objective
from ..core.training import History
from ..figures.drawing import (
    LOSS_LABEL,
    draw_curves,
    draw_split_curves,
    draw_weights,
    subplots,
)
from ..figures.run_figures import weight_images


def _lambda_axis(ax, values) -> None:
    """A log axis for lambda that still shows lambda = 0."""
    positive = [v for v in values if v > 0]
    ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
    ax.set_xlabel("lambda (L2 strength)")


def _per_job_curves(ax, jobs: list[Job], metric: str, key: str, name: str) -> None:
    colors = colormaps["viridis"](np.linspace(0, 0.9, len(jobs)))
    for job, color in zip(jobs, colors, strict=True):
        values = np.asarray(job.history.metrics[metric])
        if metric.endswith("accuracy"):
            values = 100 * values
        ax.plot(
            job.history.epoch, values, color=color, label=f"{name} = {job.param(key):g}"
        )
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend()


def curves(history: History, title: str, unit: str = "epoch"):
    """Loss and accuracy per epoch (``unit``) of one run's three splits."""
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(11, 4))
    draw_curves(ax_loss, ax_acc, history, unit)
    ax_acc.set_ylim(max(0, ax_acc.get_ylim()[0]), 100)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def learning_rates(jobs: list[Job], title: str):
    fig, ax = subplots(figsize=(7, 4.5))
    _per_job_curves(ax, jobs, "val_loss", "optimizer.lr", "lr")
    ax.set_yscale("log")
    ax.set_ylabel(f"validation {LOSS_LABEL}, log scale")
    ax.set_title(f"{title}: validation loss per learning rate")
    return fig


def annealing(jobs: list[Job], title: str):
    fig, axes = subplots(len(jobs), 2, figsize=(11, 3.6 * len(jobs)), squeeze=False)
    for row, job in zip(axes, jobs, strict=True):
        k = job.param("optimizer.anneal_k")
        schedule = "constant rate" if k == 0 else f"lr / (1 + {k:g} t)"
        draw_curves(row[0], row[1], job.history)
        _zoom_accuracy(row[1], [job], "train_accuracy", "val_accuracy", "test_accuracy")
        for ax in row:
            ax.set_title(f"{schedule}, lr = {job.param('optimizer.lr'):g}")
    fig.suptitle(f"{title}: constant against annealed rate")
    fig.tight_layout()
    return fig


def _zoom_accuracy(ax, jobs: list[Job], *metrics: str) -> None:
    """Limit the y axis to where the runs spend their epochs after the first: the
    start (chance, 50% or 10%) would squeeze the differences into a few pixels."""
    later = 100 * np.concatenate(
        [job.history.metrics[m][1:] for job in jobs for m in metrics]
    )
    if later.size:
        low = max(0.0, np.floor(np.percentile(later, 2)) - 0.5)
        ax.set_ylim(low, min(100.0, np.ceil(later.max()) + 0.5))


def over_seeds_panel(ax, sweep: dict) -> None:
    """Each lambda's final validation and test accuracy: the mean over the seeds
    of the mini-batch order, with its 95% interval as an error bar."""
    lambdas = [float(key.split("=", 1)[1]) for key in sweep]
    for split, marker in (("val", "o-"), ("test", "s--")):
        means = np.array(
            [100 * row[f"{split}_accuracy_mean"] for row in sweep.values()]
        )
        spans = np.array(
            [
                [100 * v for v in row[f"{split}_accuracy_interval"]]
                for row in sweep.values()
            ]
        )
        ax.errorbar(
            lambdas,
            means,
            yerr=[means - spans[:, 0], spans[:, 1] - means],
            fmt=marker,
            capsize=4,
            label=f"{'validation' if split == 'val' else 'test'}",
        )
    seeds = min(row["seeds"] for row in sweep.values())
    _lambda_axis(ax, lambdas)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"mean over {seeds} seeds, 95% interval")
    ax.grid(alpha=0.3)
    ax.legend()


def l2_accuracy(jobs: list[Job], title: str, sweep: dict):
    fig, (ax, right) = subplots(1, 2, figsize=(12, 4.5))
    _per_job_curves(ax, jobs, "val_accuracy", "model.l2", "lambda")
    _zoom_accuracy(ax, jobs, "val_accuracy")
    ax.set_ylabel("validation accuracy (%), from epoch 1")
    ax.set_title(f"per epoch (seed {jobs[0].param('seed')})")
    over_seeds_panel(right, sweep)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def l2_weight_norm(jobs: list[Job], title: str):
    fig, (left, right) = subplots(1, 2, figsize=(12, 4.5))
    lambdas = [job.param("model.l2") for job in jobs]
    norms = [job.model.weight_norm() for job in jobs]
    left.plot(lambdas, norms, "o-")
    _lambda_axis(left, lambdas)
    left.set_ylabel("||w|| of the best weights")
    left.set_title("final length of the weight vector")
    left.grid(alpha=0.3)
    _per_job_curves(right, jobs, "weight_norm", "model.l2", "lambda")
    right.set_ylabel("||w||")
    right.set_title("length of the weight vector during training")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def l2_weight_images(jobs: list[Job], title: str):
    fig, axes = subplots(1, len(jobs), figsize=(2.6 * len(jobs), 3), squeeze=False)
    for ax, job in zip(axes[0], jobs, strict=True):
        draw_weights(ax, weight_images(job.model)[0])
        ax.set_title(f"lambda = {job.param('model.l2'):g}")
        ax.set_axis_off()
    fig.suptitle(title + " (red: evidence for the first digit; each own scale)")
    return fig


def softmax_l2(jobs: list[Job], sweep: dict):
    fig, (left, middle, right) = subplots(1, 3, figsize=(17, 4.5))
    _per_job_curves(left, jobs, "val_accuracy", "model.l2", "lambda")
    _zoom_accuracy(left, jobs, "val_accuracy")
    left.set_ylabel("validation accuracy (%), from epoch 1")
    left.set_title(f"validation accuracy per epoch (seed {jobs[0].param('seed')})")
    over_seeds_panel(middle, sweep)
    lambdas = [job.param("model.l2") for job in jobs]
    right.plot(
        lambdas, [job.metrics["epochs_run"] for job in jobs], "o-", label="epochs run"
    )
    right.plot(
        lambdas, [job.metrics["best_epoch"] for job in jobs], "s--", label="best epoch"
    )
    _lambda_axis(right, lambdas)
    right.set_ylabel("epochs")
    right.set_title("when early stopping ended each run")
    right.grid(alpha=0.3)
    right.legend()
    fig.suptitle("Softmax regression: lambda sweep")
    fig.tight_layout()
    return fig


def digits_and_weights(
    x: np.ndarray, t: np.ndarray, job: Job, title: str, dark: bool = False
):
    """Each digit's average training image above its weights. ``dark``: the
    images white on black, as MNIST stores them (and the seed study showed
    them), and every weight image on one colour scale, with its bar."""
    weights = weight_images(job.model)
    side = weights.shape[1]
    fig, axes = subplots(2, 10, figsize=(15, 3.6))
    limit = (float(np.abs(weights).max()) or 1.0) if dark else None
    for digit in range(10):
        mean = x[t == digit].mean(axis=0).reshape(side, side)
        axes[0, digit].imshow(mean, cmap="gray" if dark else "gray_r")
        axes[0, digit].set_title(str(digit))
        shown = draw_weights(axes[1, digit], weights[digit], limit)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("mean image")
    axes[1, 0].set_ylabel("weights")
    if dark:
        fig.colorbar(shown, ax=list(axes[1]), shrink=0.9, label="weight")
    fig.suptitle(title)
    return fig


def seed_curves(history: History, metric: str, title: str):
    """One quantity (``loss`` or ``accuracy``) of the three splits per iteration
    of a full-batch run, as the seed study's figures drew them."""
    fig, ax = subplots(figsize=(7, 4.5))
    draw_split_curves(ax, history, metric, unit="iteration")
    ax.set_title(title)
    return fig


def confusion(t: np.ndarray, predicted: np.ndarray):
    matrix = np.zeros((10, 10), int)
    np.add.at(matrix, (t, predicted), 1)
    fig, ax = subplots(figsize=(6.5, 5.5))
    shown = ax.imshow(matrix / matrix.sum(axis=1, keepdims=True) * 100, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            count,
            ha="center",
            va="center",
            fontsize=7,
            color="white" if i == j else "black",
        )
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    fig.colorbar(shown, label="% of the true digit's test images")
    ax.set_title("Softmax regression: confusion matrix (test set)")
    return fig


def worst_misclassified(x, t, log_probs, count: int = 24):
    """The misclassified test images whose wrong answer the model was most sure of,
    most sure first."""
    predicted = log_probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != t)
    confidence = np.exp(log_probs[wrong, predicted[wrong]])
    order = np.argsort(-confidence, kind="stable")[:count]
    side = int(np.sqrt(x.shape[1]))
    cols = 8
    rows = max(1, -(-len(order) // cols))
    fig, axes = subplots(rows, cols, figsize=(1.7 * cols, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, k in zip(axes.flat, order, strict=False):
        i = wrong[k]
        ax.imshow(x[i].reshape(side, side), cmap="gray_r")
        ax.set_title(
            f"{t[i]} read as {predicted[i]}\n{100 * confidence[k]:.1f}% sure",
            fontsize=8,
        )
    fig.suptitle("Softmax regression: the most confident mistakes on the test set")
    return fig


# Gradient descent near w = 0 at rates around its limit 2 / (L + l2): with a strong
# penalty, which holds w near 0, the limit still applies after the first steps.
STABILITY_FACTORS = (0.9, 1.1, 1.5)  # rates, as multiples of the limit
STABILITY_L2 = 1.0
STABILITY_STEPS = 60
STABILITY_EXAMPLES = 4000  # the first training images: the figure, not a result


def descent_losses(x, t, kind: str, n_classes: int, lr: float, l2: float):
    """Penalised training loss of full-batch gradient descent from w = 0, step by
    step, until ``STABILITY_STEPS`` or until the weights overflow."""
    model = LinearModel.zeros(kind, x.shape[1], n_classes)
    objective = Objective.of(kind, l2)
    found = []
    for _ in range(STABILITY_STEPS + 1):
        try:
            loss, grad_w, grad_b = objective.value_and_gradient(model, x, t)
        except FloatingPointError:
            break
        found.append(loss)
        model.weights -= lr * grad_w
        model.bias -= lr * grad_b
    return np.array(found)


def stability(tasks: dict[str, tuple]) -> tuple[object, dict]:
    """Gradient descent with lambda = STABILITY_L2 at rates around 2 / (L + lambda)
    for each task (name -> x, t, kind, classes); returns the figure and, per task,
    the limit and, at each rate, how far the loss swings over the last 20 steps
    (max / min - 1): 0 where it settled, more where it oscillates."""
    fig, axes = subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2))
    summary = {}
    colors = colormaps["viridis"](np.linspace(0, 0.9, len(STABILITY_FACTORS)))
    for ax, (name, (x, t, kind, k)) in zip(
        np.atleast_1d(axes), tasks.items(), strict=True
    ):
        x, t = x[:STABILITY_EXAMPLES], t[:STABILITY_EXAMPLES]
        limit = 2.0 / (curvature_at_zero(x, kind, k) + STABILITY_L2)
        summary[name] = {"limit": limit, "swing": {}}
        for factor, color in zip(STABILITY_FACTORS, colors, strict=True):
            found = descent_losses(x, t, kind, k, factor * limit, STABILITY_L2)
            last = found[-20:]
            summary[name]["swing"][factor] = float(last.max() / last.min() - 1)
            ax.plot(found, color=color, marker=".", label=f"lr = {factor:g} x limit")
        ax.set_yscale("log")
        ax.set_xlabel("step (full batch, from w = 0)")
        ax.set_ylabel(f"training {LOSS_LABEL} + penalty")
        ax.set_title(f"{name}: limit 2 / (L + {STABILITY_L2:g}) = {limit:.3g}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Gradient descent around its limit, lambda = {STABILITY_L2:g}")
    fig.tight_layout()
    return fig, summary
