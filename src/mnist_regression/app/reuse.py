"""Finished jobs kept by what they trained, so that no job trains twice.

With ``reuse_dir`` set (every training stage of ``dvc.yaml`` sets it), a job
that finishes keeps a copy of its outputs there under a key: the SHA-256 of its
resolved configuration (where it writes and how it is tracked aside), the
prepared data's digest, the package's source, NumPy's version and the threads
its passes use (sums in another order round differently). A later job of the
same key copies them instead of training:

- a stage that was interrupted (a signal, a crash, a cancelled cluster job) and
  run again trains only the jobs that did not finish;
- a stage whose grid shares a configuration with another stage's (the default
  run of the lambda sweep is a run of the models stage) copies it.

A copy is a job folder of its own (a new run key, ``reused_from`` the key of
the job that trained it), which the recorder indexes as any run, with its
curves, weight images and model. A kept job is checked whole before it is
copied (every file's SHA-256, its key); a damaged one is said and trained
again. Deleting ``reuse_dir`` forgets every job.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.io import save_json, sha256_of
from .results import Job, read_job

log = logging.getLogger("mnist_regression")
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
    """A finished job kept under its key: its folder, and the run key of the job
    that trained it (``common.record``)."""

    folder: Path
    run_key: str | None

    def job(self) -> Job:
        return read_job(self.folder)


def find(reuse_dir: str | Path, key: str, name: str = "") -> Kept | None:
    """The job kept under ``key``, if whole: every file as it was kept (its
    SHA-256 in ``job.json``), under its own key. A damaged copy is said, and its
    job trains again."""
    folder = Path(reuse_dir) / key
    if not folder.exists():
        return None
    try:
        record = json.loads((folder / RECORD).read_text())
        whole = record["key"] == key and all(
            sha256_of(folder / file) == digest
            for file, digest in record["files"].items()
        )
        whole = whole and set(record["files"]) == set(OUTPUTS)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        whole = False
    if not whole:
        log.warning(
            "%s: the kept copy of this job in %s is damaged or incomplete; it "
            "trains again",
            name or "a job",
            folder,
        )
        return None
    return Kept(folder, record.get("run_key"))


def keep(reuse_dir: str | Path, key: str, out_dir: Path, run_key: str | None) -> None:
    """Copy a finished job's outputs under ``key`` (whole or not at all), with
    the SHA-256 of each file."""
    base = Path(reuse_dir)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=base))
    try:
        for name in OUTPUTS:
            shutil.copyfile(out_dir / name, staging / name)
        files = {name: sha256_of(staging / name) for name in OUTPUTS}
        save_json(staging / RECORD, {"key": key, "files": files, "run_key": run_key})
        final = base / key
        if final.exists():  # an older or damaged copy: replaced
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
