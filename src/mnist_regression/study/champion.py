"""The rule that picks each task's champion among the workspace's finished
jobs, and what a registered version says of it (``tracking.serving`` writes it)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from ..app.results import job_folders
from ..common.io import sha256_of
from ..core.losses import LOSSES
from ..core.models import stable_rate
from ..data.prepare import load_task, scaled


@dataclass(frozen=True)
class Candidate:
    """A finished job of the workspace's outputs, as the registry sees it."""

    task: str
    val_accuracy: float
    weights_sha256: str  # of its weights.npz: the tag that finds its run
    label: str
    val_loss: float = float("nan")
    val_images: int = 0
    stable: bool = True  # trained at a rate within the stability limit


RULE = (
    "the highest validation accuracy among the finished runs that trained within "
    "the stability limit 2 / (L + lambda) (all of them, if none did); runs within "
    "one validation image of it ranked by validation loss"
)


@dataclass(frozen=True)
class Choice:
    """A task's champion by ``RULE``, and the runner-up it beat."""

    best: Candidate
    runner_up: Candidate | None
    among: int
    left_out: int = 0  # runs beyond the stability limit

    rule = RULE

    def margin(self) -> str:
        if self.runner_up is None:
            return "no other candidate"
        n = self.best.val_images or 1
        images = round((self.best.val_accuracy - self.runner_up.val_accuracy) * n)
        loss = self.runner_up.val_loss - self.best.val_loss
        more = "more" if images >= 0 else "fewer"
        return (
            f"{abs(images)} validation image{'s' if abs(images) != 1 else ''} "
            f"{more}, a validation loss lower by {loss:.4g}"
        )

    def tags(self) -> dict[str, str]:
        best, n = self.best, self.best.val_images
        k = round(best.val_accuracy * n)
        accuracy = f"{100 * best.val_accuracy:.2f}%"
        if n:
            accuracy = f"{k}/{n} ({accuracy}, 95% interval {interval(k, n)})"
        tags = {
            "selection.rule": RULE,
            "selection.metric": "validation accuracy, then validation loss",
            "selection.val_accuracy": accuracy,
            "selection.val_loss": f"{best.val_loss:.6g}",
            "selection.candidates": str(self.among),
            "selection.left_out": str(self.left_out),
            "selection.margin": self.margin(),
        }
        if self.runner_up is not None:
            tags["selection.runner_up"] = self.runner_up.label
        return tags

    def description(self) -> str:
        said = self.tags()
        runner = (
            f"; runner-up {self.runner_up.label}, by {said['selection.margin']}"
            if self.runner_up
            else ""
        )
        return (
            f"{self.best.label}: {said['selection.val_accuracy']} correct on "
            f"validation, loss {said['selection.val_loss']}; chosen among "
            f"{self.among} finished runs ({self.left_out} beyond the stability "
            f"limit left out) by {RULE}{runner}."
        )


def interval(k: int, n: int) -> str:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return f"{100 * ci.low:.1f}-{100 * ci.high:.1f}%"


def choose(candidates: list[Candidate]) -> Choice:
    """``RULE`` on the candidates of one task, each set of weights once (the
    same settings in two stages train the same weights)."""
    distinct = list({c.weights_sha256: c for c in reversed(candidates)}.values())
    pool = [c for c in distinct if c.stable] or distinct
    top = max(c.val_accuracy for c in pool)
    n = max(c.val_images for c in pool)
    image = 1 / n if n else 0.0  # one validation image, where their number is known

    def rank(c: Candidate) -> tuple:
        near = c.val_accuracy >= top - image - 1e-12
        return (not near, -c.val_accuracy if not near else 0.0, c.val_loss)

    ordered = sorted(pool, key=rank)
    runner_up = ordered[1] if len(ordered) > 1 else None
    return Choice(ordered[0], runner_up, len(pool), len(distinct) - len(pool))


def choose_per_task(candidates: list[Candidate]) -> list[Choice]:
    """``choose`` for each task among ``candidates``."""
    tasks: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        tasks.setdefault(candidate.task, []).append(candidate)
    return [choose(found) for found in tasks.values()]


def candidates(results: Path, stages: list[str], prepared_dir: str | None = None):
    """Every finished job of the training stages' outputs in the workspace, with
    whether its rate lay within the stability limit 2 / (L + lambda) of its data
    (``prepared_dir``; unknown, and so within, without it)."""
    found = []
    for stage in stages:
        for folder in job_folders(results / stage):
            metrics = json.loads((folder / "metrics.json").read_text())
            if metrics["status"] != "FINISHED":
                continue
            config = metrics["config"]
            limit = stability_limit(prepared_dir, config) if prepared_dir else None
            found.append(
                Candidate(
                    LOSSES[config["model"]["name"]].task,
                    metrics["final_val_accuracy"],
                    sha256_of(folder / "weights.npz"),
                    f"{stage}/{folder.name}",
                    metrics["final_val_loss"],
                    val_images(prepared_dir, config),
                    limit is None or config["optimizer"]["lr"] <= limit * (1 + 1e-9),
                )
            )
    return found


@functools.cache
def _task_data(prepared_dir: str, kind: str, scale: float):
    from ..core.training import Dataset

    task = LOSSES[kind].task
    return Dataset.from_arrays(scaled(load_task(prepared_dir, task), scale))


def val_images(prepared_dir: str | None, config: dict) -> int:
    """The validation images of a job's data (0 where it is not known)."""
    if not prepared_dir:
        return 0
    kind, scale = config["model"]["name"], float(config["data"]["scale"])
    return len(_task_data(prepared_dir, kind, scale).t["val"])


def stability_limit(prepared_dir: str, config: dict) -> float:
    """2 / (L + lambda) of a job's training data and penalty."""
    kind, scale = config["model"]["name"], float(config["data"]["scale"])
    data = _task_data(prepared_dir, kind, scale)
    return stable_rate(
        data.x["train"], kind, data.n_classes, config["model"]["l2"], edge=True
    )
