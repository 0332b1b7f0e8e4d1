"""Finished jobs kept by what they trained, so that no job trains twice.

With ``reuse_dir`` set (every training stage of ``dvc.yaml`` sets it), a job
that finishes keeps a copy of its outputs there under a key: the SHA-256 of its
resolved configuration (where it writes and how it is tracked aside), the
prepared data's digest, the package's source, NumPy's version and the threads
its passes use (sums in another order round differently). A later job of the
same key copies them instead of training:

- a stage that was interrupted (a signal, a crash, a cancelled cluster job) and
  run again trains only the jobs that did not finish, and its sweep's MLflow
  parent run, reopened, holds every job once (``tracking.run_log.SweepRun``);
- a stage whose grid shares a configuration with another stage's (the default
  run of the lambda sweep is a run of the models stage) copies it, and records
  an MLflow run under its own parent with the same curves and final metrics,
  tagged ``reused_from`` with the run that trained it (whose artifacts and
  model are there).

A kept job whose run is no longer FINISHED in the store (deleted, or the run
never closed) is trained again. Deleting ``reuse_dir`` forgets every job.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.io import save_json, sha256_of
from .results import Job, read_job

PACKAGE = Path(__file__).resolve().parents[1]
# what a job's outcome does not depend on: where it writes, how it is shown or
# tracked, the grids of the other stages, and this very setting
NOT_IN_KEY = ("output_dir", "progress", "tracking", "study", "reuse_dir")
OUTPUTS = ("weights.npz", "history.csv", "metrics.json")
RECORD = "job.json"


# what no training job runs: the report's code (the training stages' DVC deps
# leave them out too)
NOT_TRAINING = ("stages", "study")


@functools.cache
def source_digest() -> str:
    """SHA-256 over the package's Python sources a job runs, by relative path."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in NOT_TRAINING:
            continue
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def job_key(resolved: dict, data_sha256: str, threads: int) -> str:
    """The key of a job: what its outcome depends on, hashed."""
    what = {
        "config": {k: v for k, v in resolved.items() if k not in NOT_IN_KEY},
        "data_sha256": data_sha256,
        "source": source_digest(),
        "numpy": np.__version__,
        "threads": threads,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


@dataclass
class Kept:
    """A finished job kept under its key: its folder, and the MLflow run that
    trained it (``run_id`` and its parent; None when it was not tracked)."""

    folder: Path
    run_id: str | None
    parent_run_id: str | None
    run_key: str | None = None  # of its job folder (``common.record``)

    def job(self) -> Job:
        return read_job(self.folder)


def find(reuse_dir: str | Path, key: str) -> Kept | None:
    """The job kept under ``key``, if complete and intact."""
    folder = Path(reuse_dir) / key
    try:
        record = json.loads((folder / RECORD).read_text())
        if sha256_of(folder / "weights.npz") != record["weights_sha256"]:
            return None
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    if metrics.get("status") != "FINISHED" or not (folder / "history.csv").is_file():
        return None
    return Kept(
        folder, record.get("run_id"), record.get("parent_run_id"), record.get("run_key")
    )


def keep(
    reuse_dir: str | Path,
    key: str,
    out_dir: Path,
    weights_sha256: str,
    run_id: str | None,
    parent_run_id: str | None,
    run_key: str | None = None,
) -> None:
    """Copy a finished job's outputs under ``key`` (whole or not at all)."""
    base = Path(reuse_dir)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=base))
    try:
        for name in OUTPUTS:
            shutil.copyfile(out_dir / name, staging / name)
        record = {
            "weights_sha256": weights_sha256,
            "run_id": run_id,
            "parent_run_id": parent_run_id,
            "run_key": run_key,
        }
        save_json(staging / RECORD, record)
        final = base / key
        if final.exists():  # an older copy (its run gone): replaced
            shutil.rmtree(final)
        os.rename(staging, final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # kept or not, the job is done


def restore(kept: Kept, out_dir: Path, resolved: dict) -> None:
    """Write a kept job's outputs to ``out_dir``, its ``metrics.json`` with the
    configuration of the job that asked (its own ``output_dir``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("weights.npz", "history.csv"):
        shutil.copyfile(kept.folder / name, out_dir / name)
    metrics = json.loads((kept.folder / "metrics.json").read_text())
    save_json(out_dir / "metrics.json", {**metrics, "config": resolved})
