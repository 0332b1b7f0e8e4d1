"""Reading back what the training stages wrote: one ``Job`` per training run."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_write
from .models import LinearModel
from .training import History


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


def write_histories(path: Path, labelled: list[tuple[str, History]]) -> None:
    """Histories as long-format CSV: run label, epoch, then one column per metric."""
    with atomic_write(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        metrics = list(labelled[0][1].metrics)
        writer.writerow(["run", "epoch", *metrics])
        for label, history in labelled:
            for i, epoch in enumerate(history.epoch):
                values = (history.metrics[m][i] for m in metrics)
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


def read_stage(directory: Path, sort_by: str | None = None) -> list[Job]:
    """The jobs of one training stage: a single run, or a multirun's numbered jobs."""
    if (directory / "metrics.json").is_file():
        return [read_job(directory)]
    folders = [p for p in directory.iterdir() if (p / "metrics.json").is_file()]
    if not folders:
        raise FileNotFoundError(f"{directory}: no training results; run `dvc repro`")
    jobs = [read_job(p) for p in sorted(folders, key=lambda p: int(p.name))]
    if sort_by:
        jobs.sort(key=lambda job: job.param(sort_by))
    return jobs
