"""MLflow behind a small interface; ``NullRun`` stands in when tracking is off.

The store defaults to ``sqlite:///<root>/mlruns/mlflow.db`` with artifacts under
``<root>/mlruns/artifacts``, where root is ``$DVC_ROOT`` inside a DVC stage and the
working directory otherwise; ``$MLFLOW_TRACKING_URI`` or ``tracking.uri`` replace it.
Per-epoch metrics are buffered and written with ``log_batch``: at most every
``flush_seconds`` and when the run ends, so logging costs little and a crash loses
nothing already buffered. A run ends FINISHED, FAILED (an exception) or KILLED
(Ctrl-C, SIGTERM), never left RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that runs end as KILLED."""


def raise_on_sigterm() -> None:
    def handler(signum, frame):
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri(cfg: DictConfig) -> str:
    if cfg.uri:
        return str(cfg.uri)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = project_root() / "mlruns"
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def _store_lock(uri: str):
    """An inter-process lock beside a SQLite store; no lock for other stores."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    return FileLock(uri.removeprefix("sqlite:///") + ".lock")


class NullRun:
    """Tracking switched off: every call does nothing."""

    run_id = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        pass

    def log_metrics(self, values: Mapping[str, float]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def log_artifacts(self, directory: Path) -> None:
        pass


class MlflowRun(NullRun):
    """One MLflow run, opened on ``__enter__`` and terminated on ``__exit__``."""

    def __init__(
        self,
        cfg: DictConfig,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        flush_seconds: float = 15.0,
    ):
        self.cfg, self.run_name = cfg, run_name
        self.params, self.tags = flatten(params), dict(tags)
        self.flush_seconds = flush_seconds
        self._pending: list = []
        self._last_flush = time.monotonic()

    def __enter__(self) -> MlflowRun:
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        uri = tracking_uri(self.cfg)
        with _store_lock(uri):  # parallel sweep jobs may meet a store not yet made
            self.client = MlflowClient(uri)
            self.client.search_experiments(max_results=1)  # creates the tables
            experiment_id = self._experiment_id()
        run = self.client.create_run(
            experiment_id, run_name=self.run_name, tags=self.tags
        )
        self.run_id = run.info.run_id
        self.client.log_batch(
            self.run_id,
            params=[Param(k, v[:6000]) for k, v in self.params.items()],
            tags=[RunTag("mlflow.runName", self.run_name)],
        )
        return self

    def _experiment_id(self) -> str:
        name = self.cfg.experiment
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        artifacts = None
        if self.client.tracking_uri.startswith("sqlite:///"):
            store = Path(self.client.tracking_uri.removeprefix("sqlite:///")).parent
            artifacts = (store / "artifacts").as_uri()
        return self.client.create_experiment(name, artifact_location=artifacts)

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, epoch) for k, v in values.items()]
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def log_metrics(self, values: Mapping[str, float]) -> None:
        self.log_epoch(0, values)

    def flush(self) -> None:
        if self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending)
            self._pending = []
        self._last_flush = time.monotonic()

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(
            self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]
        )

    def log_artifacts(self, directory: Path) -> None:
        self.client.log_artifacts(self.run_id, str(directory))

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = "FINISHED"
        if exc_type is not None:
            interrupted = issubclass(exc_type, KeyboardInterrupt | Terminated)
            status = "KILLED" if interrupted else "FAILED"
            self.set_tags({"failure_reason": f"{exc_type.__name__}: {exc}"[:5000]})
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status)
        return False


def open_run(cfg: DictConfig, run_name: str, params, tags) -> NullRun:
    if not cfg.enabled:
        return NullRun()
    return MlflowRun(cfg, run_name, params, tags)
