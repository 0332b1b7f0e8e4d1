"""One recorder per command: MLflow written from the job folders (``index``), in
a thread of the command's main process, never by a training process.

A single run starts it before training, so that MLflow's import and the store's
set-up overlap the data's loading; a multirun (joblib workers, SLURM jobs)
starts it in the Hydra main process, which otherwise only waits on its workers.
Every ``interval`` seconds it indexes the folders that changed (a running job's
new evaluations appear in ``mlflow ui`` within seconds), and once more when the
command ends; then it closes a sweep's parent run with its best job.

A store that fails while jobs train costs no result and no training time: the
recorder stops writing, the folders keep everything, and the command ends with
one line naming the ``store sync`` that records them.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from ..common.cli import shutting_down
from ..common.errors import UserError
from ..common.io import save_json
from ..common.record import (
    HISTORY_FILE,
    METRICS_FILE,
    RUN_FILE,
    SWEEP_FILE,
    SWEEP_KEY_VARIABLE,
    new_key,
    now_ms,
    read_json,
)
from .index import Index, close_parent, run_folders
from .target import describe_failure

STAMPED = (RUN_FILE, HISTORY_FILE, METRICS_FILE)


def stamp(folder: Path) -> tuple:
    """What changes when a job writes to its folder."""
    found = []
    for name in STAMPED:
        try:
            info = (folder / name).stat()
            found.append((info.st_mtime_ns, info.st_size))
        except OSError:
            found.append(None)
    return tuple(found)


class Recorder:
    """Index the job folders under ``roots`` into ``tracking``'s store while a
    command runs; ``sweep``: the folder whose ``sweep.json`` names the parent."""

    def __init__(
        self,
        tracking: Mapping,
        roots: list[Path],
        sweep: Path | None = None,
        interval: float = 1.0,
        key: str | None = None,
    ) -> None:
        self.uri, self.experiment = tracking["uri"], str(tracking["experiment"])
        self.roots, self.sweep, self.interval = list(roots), sweep, interval
        self.key = key  # a single run's run key
        self.ready, self.stopping = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.told = False  # the error was raised to the command, which said it
        self.index: Index | None = None
        self.parent_id: str | None = None
        self.target = None
        self.seen: dict[Path, tuple] = {}
        self.thread = threading.Thread(
            target=self._run, name="mlflow-recorder", daemon=True
        )

    def start(self) -> Recorder:
        self.thread.start()
        return self

    def wait_ready(self) -> None:
        """Wait until the store is open, a single run's MLflow run made and a
        sweep's parent run; a store the user must fix first (a wrong URI, a
        refused login or write) raises its one-line error here."""
        self.ready.wait()
        if self.index is None and isinstance(self.error, UserError):
            self.told = True
            raise self.error

    def _run(self) -> None:
        from .session import open_session

        try:
            session = open_session(self.uri)
            self.target = session.target
            index = Index(session.client, session.experiment_id(self.experiment))
            if self.sweep is not None:  # its parent run: a refusal shows here
                self.parent_id = index.ensure_parent(self.sweep)
            else:  # the run's own, once its folder is started
                while not self.stopping.is_set() and not self.started():
                    self.stopping.wait(0.05)
                self.index_changed(index)
            index.end_orphans()  # of earlier commands killed with SIGKILL
            self.index = index
        except BaseException as err:  # noqa: BLE001 - told by the command's thread
            refused = self.target and self.target.refused(err, self.experiment)
            self.error = refused or err
            self.ready.set()
            return
        self.ready.set()
        while not self.stopping.wait(self.interval) and self._pass():
            pass
        if self.error is None:
            self._pass()

    def index_changed(self, index: Index) -> None:
        """Index the folders that changed since they were last indexed."""
        for folder in self.folders():
            now = stamp(folder)
            if self.seen.get(folder) == now:
                continue
            record = read_json(folder / RUN_FILE)
            if record is None or "run_key" not in record:
                continue  # being written, or not a job's
            index.index_folder(folder, record)
            self.seen[folder] = now

    def _pass(self) -> bool:
        """Index the folders that changed; False once the store failed."""
        try:
            self.index_changed(self.index)
        except Exception as err:  # noqa: BLE001 - the folders keep the runs
            self.error = err
            return False
        return True

    def started(self) -> bool:
        """Whether a single run's folder holds its own ``run.json`` (not one an
        earlier run left in the same folder)."""
        records = [read_json(f / RUN_FILE) or {} for f in self.folders()]
        return any(r.get("run_key") == self.key for r in records)

    def folders(self) -> list[Path]:
        """A sweep's job folders; a single run's own folder alone."""
        if self.sweep is None:
            return [r for r in self.roots if (r / RUN_FILE).is_file()]
        return run_folders([r for r in self.roots if r.exists()])

    def stop(self) -> None:
        """Index what is left, then end the thread."""
        self.stopping.set()
        self.thread.join()

    def end_open_runs(self, status: str, reason: str | None) -> None:
        """End the runs of this command's folders that hold no ``metrics.json``."""
        try:
            for folder in self.folders():
                record = read_json(folder / RUN_FILE)
                if record is None or (folder / METRICS_FILE).is_file():
                    continue
                run = self.index.find(record["run_key"])
                if run is None or run.info.status != "RUNNING":
                    continue
                why = reason or "the job ended without writing metrics.json"
                self.index.client.set_tag(run.info.run_id, "failure_reason", why)
                self.index.client.set_terminated(run.info.run_id, status)
        except Exception as err:  # noqa: BLE001 - the folders keep the runs
            self.error = err

    def run_id(self, folder: Path) -> str | None:
        """The MLflow run of a job folder, once indexed."""
        record = read_json(folder / RUN_FILE)
        if self.index is None or record is None or self.error is not None:
            return None
        found = self.index.find(record["run_key"])
        return found.info.run_id if found else None

    def warning(self) -> str | None:
        """One line for a store that failed: what the folders keep, and the
        command that records them."""
        if self.error is None or self.told:
            return None
        uri = self.target.uri if self.target else self.uri or "the default store"
        where = " ".join(str(r) for r in self.roots)
        return (
            f"warning: tracking store {uri}: {describe_failure(self.error)}; the "
            "runs are kept in their folders: "
            f"`python -m mnist_regression.tracking.store sync {where}` records them"
        )

    def finish(
        self,
        status: str = "FINISHED",
        curves: list | None = None,
        reason: str | None = None,
    ) -> None:
        """Stop, end the runs whose job ended without its ``metrics.json`` (a
        crash, a full disk: FAILED, or ``status`` if the command was stopped;
        ``reason``: why), close a sweep's parent run with its best job, and
        print the warning of a store that failed. A signal meanwhile waits for
        the end (a second one stops at once): the folders' last records go in."""
        with shutting_down():
            self.stop()
            if self.error is None:
                self.end_open_runs("FAILED" if status == "FINISHED" else status, reason)
            if self.parent_id is not None and self.error is None:
                try:
                    close_parent(self.index.client, self.parent_id, status, curves)
                except Exception as err:  # noqa: BLE001 - the jobs' runs are in
                    self.error = err
        if warning := self.warning():
            print(warning, file=sys.stderr, flush=True)


def start_sweep(tracking: Mapping, jobs_dir: Path, grid: dict, folder: str):
    """A sweep's recorder, started: ``sweep.json`` written beside its job folders
    (its parent run's new key, name and grid; its jobs learn the key from the
    environment), the store opened; a store the user must fix raises here,
    before any job starts."""
    from .liveness import process_tags
    from .provenance import source_tags, sweep_name

    key = new_key()
    jobs_dir.mkdir(parents=True, exist_ok=True)
    tags = {"sweep_grid": json.dumps(grid), "sweep": folder}
    save_json(
        jobs_dir / SWEEP_FILE,
        {
            "run_key": key,
            "run_name": sweep_name(grid),
            "grid": grid,
            "tags": {**tags, **source_tags(), **process_tags()},
            "started": now_ms(),
        },
    )
    os.environ[SWEEP_KEY_VARIABLE] = key
    recorder = Recorder(tracking, [jobs_dir], sweep=jobs_dir).start()
    recorder.wait_ready()
    return recorder
