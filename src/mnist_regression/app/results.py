"""Reading back what the training stages wrote: one ``Job`` per training run."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import MissingInputError
from ..common.io import atomic_write
from ..core.models import LinearModel
from ..core.training import History


@dataclass
class Job:
    label: str
    config: dict
    metrics: dict
    history: History
    model: LinearModel

    def param(self, dotted: str):
        value = self.config
        for key in dotted.split("."):
            value = value[key]
        return value


def write_histories(
    path: Path, labelled: list[tuple[str, History]], digits: int | None = None
) -> None:
    """Histories as long-format CSV: run label, epoch, then one column per metric
    (to ``digits`` significant digits if given, else exactly)."""
    with atomic_write(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        metrics = list(labelled[0][1].metrics)
        writer.writerow(["run", "epoch", *metrics])
        for label, history in labelled:
            for i, epoch in enumerate(history.epoch):
                values = [history.metrics[m][i] for m in metrics]
                if digits is not None:
                    values = [f"{v:.{digits}g}" for v in values]
                writer.writerow([label, epoch, *values])


def read_history(path: Path, best_epoch: int) -> History:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    history = History(best_epoch=best_epoch)
    for row in rows:
        history.append(int(row["epoch"]), {k: float(row[k]) for k in history.metrics})
    return history


def read_job(directory: Path) -> Job:
    metrics = json.loads((directory / "metrics.json").read_text())
    config = metrics.pop("config")
    with np.load(directory / "weights.npz") as arrays:
        model = LinearModel(config["model"]["name"], arrays["weights"], arrays["bias"])
    history = read_history(directory / "history.csv", metrics["best_epoch"])
    history.stop_reason = metrics["stop_reason"]
    return Job(metrics["run"], config, metrics, history, model)


@dataclass
class FailedJob:
    label: str
    reason: str


def job_folders(directory: Path) -> list[Path]:
    """A single run's folder, or a multirun's numbered job folders in order."""
    if (directory / "metrics.json").is_file():
        return [directory]
    if not directory.is_dir():
        return []
    numbered = [p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(numbered, key=lambda p: int(p.name))


def job_failure(folder: Path) -> FailedJob | None:
    """None for a finished job; else its label and why it failed."""
    path = folder / "metrics.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    if record.get("status", "FINISHED" if "best_epoch" in record else "") == "FINISHED":
        return None
    reason = record.get("failure_reason", "stopped before writing its result")
    return FailedJob(record.get("run", f"job {folder.name}"), reason)


def read_stage(
    directory: Path, sort_by: str | None = None
) -> tuple[list[Job], list[FailedJob]]:
    """The finished and the failed jobs of one training stage."""
    folders = job_folders(directory)
    if not folders:
        raise MissingInputError(f"{directory}: no training results; run `dvc repro`")
    jobs, failed = [], []
    for folder in folders:
        failure = job_failure(folder)
        if failure is None:
            jobs.append(read_job(folder))
        else:
            failed.append(failure)
    if sort_by:
        jobs.sort(key=lambda job: job.param(sort_by))
    return jobs, failed
