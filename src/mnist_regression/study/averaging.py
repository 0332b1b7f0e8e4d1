"""The default optimizer against the plain steps it replaced, at every lambda.

The lambda sweeps (``train@logistic_l2``, ``train@softmax_l2``) run the defaults:
steps averaged over each epoch at ``lr=auto``. The ``l2_plain`` stage runs the
same lambdas and seeds with ``study.plain``, the plain steps of the previous
defaults. Per model and lambda: both means over the seeds, the epochs each ran,
and whether the averaged default's validation accuracy is within the noise of
the plain one's (the 95% Wilson interval of the validation set), or beyond it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..app.results import Job
from .original import TASK, pct, wilson, within_noise

# what is compared -> the job's metric it is read from
COMPARED = {
    "val_accuracy": "final_val_accuracy",
    "test_accuracy": "final_test_accuracy",
    "epochs_run": "epochs_run",
}


def means(jobs: list[Job]) -> dict:
    """Each of ``COMPARED`` averaged over ``jobs`` (the seeds of one setting)."""
    return {
        kind: float(np.mean([job.metrics[metric] for job in jobs]))
        for kind, metric in COMPARED.items()
    }


def verdict(averaged: float, plain: float, n_val: int) -> str:
    """Where the averaged default's validation accuracy stands against the plain
    steps': within the noise of a set of ``n_val`` images, or beyond it."""
    if within_noise(averaged, n_val, (plain, 0.0)):
        return "within the noise"
    return "gain beyond the noise" if averaged > plain else "loss beyond the noise"


def compare(
    averaged: Mapping[str, list[Job]], plain: list[Job], n_val: Mapping[str, int]
) -> dict:
    """Per model (``averaged``: its lambda sweep's jobs, every seed) and lambda:
    the two means over the seeds and the verdict."""
    found = {}
    for model, jobs in averaged.items():
        rows = {}
        for l2 in dict.fromkeys(job.param("model.l2") for job in jobs):
            ours = [job for job in jobs if job.param("model.l2") == l2]
            theirs = [
                job
                for job in plain
                if job.param("model.name") == model and job.param("model.l2") == l2
            ]
            if not theirs:
                continue
            row = {"seeds": len(ours), "averaged": means(ours), "plain": means(theirs)}
            row["verdict"] = verdict(
                row["averaged"]["val_accuracy"],
                row["plain"]["val_accuracy"],
                n_val[model],
            )
            rows[f"l2={l2:g}"] = row
        found[model] = rows
    return found


def section(found: dict, n_val: Mapping[str, int], plain_settings: str) -> list[str]:
    """results.md's section: one table for both models, and the sentence the
    verdicts add up to."""
    lines = [
        "### The default optimizer against the plain steps it replaced",
        "",
        "Our defaults average each epoch's mini-batch steps (Polyak-Ruppert) and "
        "step at the edge of stability, 2 / (L + lambda) with L the curvature of "
        "the loss at w = 0 (`optimizer.average=epoch`, `optimizer.lr=auto`); "
        "early stopping watches the averaged weights, and the run keeps them. "
        f"The `l2_plain` stage runs the same lambdas and seeds with the plain "
        f"steps they replaced ({plain_settings}). Means over the seeds; the "
        "interval is the 95% Wilson interval of the averaged default's validation "
        "accuracy on its set, and the verdict says whether the plain steps' mean "
        "lies within it.",
        "",
        "| task | lambda | seeds | validation, plain | validation, averaged "
        "| test, plain | test, averaged | epochs, plain | epochs, averaged | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    losses = []
    for model, rows in found.items():
        for key, row in rows.items():
            plain, ours = row["plain"], row["averaged"]
            low, high = wilson(ours["val_accuracy"], n_val[model])
            lines.append(
                f"| {TASK[model]} | {key.removeprefix('l2=')} | {row['seeds']} "
                f"| {pct(plain['val_accuracy'])} "
                f"| {pct(ours['val_accuracy'])} ({100 * low:.1f}-{100 * high:.1f}) "
                f"| {pct(plain['test_accuracy'])} | {pct(ours['test_accuracy'])} "
                f"| {plain['epochs_run']:.1f} | {ours['epochs_run']:.1f} "
                f"| {row['verdict']} |"
            )
            if row["verdict"].startswith("loss"):
                losses.append(f"{TASK[model]} at lambda {key.removeprefix('l2=')}")
    lines += [
        "",
        "At no lambda does the averaged default lose validation accuracy beyond "
        "the noise."
        if not losses
        else "The averaged default loses validation accuracy beyond the noise at: "
        + "; ".join(losses)
        + ".",
    ]
    return lines
