"""A job's folder is the record of its run: what a job writes there as it goes,
and what the tracking index (``tracking.index``) reads back.

- ``run.json``, written when the job starts: its run key (a UUID made then, by
  which the index finds its MLflow run, so that indexing twice never duplicates),
  name, resolved config, tags, dataset and, in a sweep, its parent's key; updated
  when the job ends (end time, training seconds). It identifies one execution,
  not a result: DVC ignores it (``.dvcignore``), so outputs stay bit-identical.
- ``history.csv``: one row per evaluation, appended and flushed as the job
  trains, so that a reader sees a running job's curve;
- at the end ``weights.npz`` and, last, ``metrics.json`` with the status
  (FINISHED, FAILED or KILLED and why).

A sweep's folder holds ``sweep.json``: the parent run's key, name and grid.
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .io import save_json

RUN_FILE = "run.json"
SWEEP_FILE = "sweep.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "weights.npz"
# Set by a sweep's main process: the run key of its parent, for its jobs.
SWEEP_KEY_VARIABLE = "MNIST_REGRESSION_SWEEP_KEY"


def new_key() -> str:
    return uuid.uuid4().hex


def now_ms() -> int:
    return int(time.time() * 1000)


def start_run(folder: Path, record: Mapping[str, Any]) -> dict:
    """Write ``run.json`` for a job that starts now, with a new run key."""
    written = {"run_key": new_key(), "started": now_ms(), **record}
    save_json(Path(folder) / RUN_FILE, written)
    return written


def end_run(folder: Path, **values: Any) -> None:
    """Add the end time and ``values`` to a job's ``run.json``."""
    path = Path(folder) / RUN_FILE
    record = json.loads(path.read_text())
    save_json(path, {**record, "ended": now_ms(), **values})


def read_json(path: Path) -> dict | None:
    """A JSON object file, or None where it is missing, cut short or not one."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class HistoryLog:
    """``history.csv`` as a job trains: the header and one row per evaluation,
    each flushed to the file at once (the same text the finished run writes)."""

    def __init__(self, path: Path, label: str, metrics: list[str]) -> None:
        self.path, self.label, self.metrics = Path(path), label, list(metrics)
        self.handle = None
        self.failed = False  # a disk that filled: the run's end writes it whole

    def append(self, epoch: int, values: Mapping[str, float]) -> None:
        if self.failed:
            return
        try:
            if self.handle is None:
                self.handle = open(self.path, "w", newline="")  # noqa: SIM115
                csv.writer(self.handle, lineterminator="\n").writerow(
                    ["run", "epoch", *self.metrics]
                )
            row = [self.label, epoch, *(values[m] for m in self.metrics)]
            csv.writer(self.handle, lineterminator="\n").writerow(row)
            self.handle.flush()
        except OSError:
            self.failed = True
            with contextlib.suppress(OSError):
                self.close()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def read_rows(path: Path) -> list[dict[str, float]]:
    """The complete rows of a ``history.csv`` (epoch and metrics as numbers); a
    last line cut short by a job still writing, or killed, is left out."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return []
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # being written
    rows = []
    for row in csv.DictReader(lines):
        try:
            values = {k: float(v) for k, v in row.items() if k not in ("run", None)}
        except (TypeError, ValueError):
            break
        if "epoch" not in values or None in row:
            break
        rows.append(values)
    return rows
