"""How a run is written to MLflow (what it writes is in ``run_log``): MLflow
behind a small interface, ``NullRun`` standing in when tracking is off.

The target (``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else
``sqlite:///<root>/mlflow.db`` with artifacts in ``<root>/mlruns``,
root being ``$DVC_ROOT`` inside a DVC stage) is checked before training starts
(``target.prepare_target``). Per-epoch metrics are buffered and written with
``log_batch`` at most every ``flush_seconds`` and when the run ends.

Tracking never costs a result: a failed write mid-run is kept and tried again at
the next flush; at the end each write is retried with backoff for up to
``retry_seconds``, and what still fails is kept in ``mlflow-pending/`` beside the
run's outputs, for ``python -m mnist_regression.tracking.store replay``. A run ends
FINISHED, FAILED (an exception) or KILLED (Ctrl-C, SIGTERM); a second signal
cannot break that ending.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..common.cli import check_stop, shutting_down
from ..common.errors import Terminated
from .liveness import mark_stale_runs, process_tags
from .pending import keep_pending
from .session import log_params, metric_batches, open_session
from .target import describe_failure, resolve_target

# Per-epoch metrics are named epoch/<name>: MLflow's run page then shows them in
# a section of their own, ahead of the single values of the whole run.
EPOCH_SECTION = "epoch"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


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

    def log_model(self, model, example, classes, factor) -> None:
        pass


class MlflowRun(NullRun):
    """One MLflow run, opened on ``__enter__`` and terminated on ``__exit__``.

    ``keep_dir`` is where what cannot be written is kept (the run's output folder).
    """

    def __init__(
        self,
        cfg: DictConfig,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        keep_dir: Path,
        dataset: Mapping[str, str] | None = None,
        flush_seconds: float = 15.0,
    ):
        self.cfg, self.run_name = cfg, run_name
        self.params, self.tags = flatten(params), dict(tags)
        self.keep_dir = Path(keep_dir)
        self.dataset = dataset
        self.flush_seconds = flush_seconds
        self.retry_seconds = float(cfg.retry_seconds)
        self.target = resolve_target(cfg.uri)
        self._metrics: list = []  # Metric entities not yet written
        self._tags: dict[str, str] = {}  # tags not yet written
        self._artifacts: Path | None = None  # a copy of artifacts not yet written
        self._last_flush = time.monotonic()
        self._warned = False

    def __enter__(self) -> MlflowRun:
        try:
            self._start()
        except BaseException as err:
            # a signal (or a refusal) once the run exists: end it as any run
            # interrupted later, instead of leaving it RUNNING
            if self.run_id is not None:
                self.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def _start(self) -> None:
        from mlflow.entities import RunTag

        session = open_session(self.target)
        try:
            self.client = session.client
            self.experiment_id = experiment_id = session.experiment_id(
                str(self.cfg.experiment)
            )
            mark_stale_runs(self.client, [experiment_id])
            run = self.client.create_run(
                experiment_id,
                run_name=self.run_name,
                tags={**self.tags, **process_tags()},
            )
            self.run_id = run.info.run_id
            log_params(self.client, self.run_id, self.params)
            self.client.log_batch(
                self.run_id, tags=[RunTag("mlflow.runName", self.run_name)]
            )
            if self.dataset:
                self._log_dataset()
        except Exception as err:
            check_stop()  # an interrupt that a library turned into another error
            refused = self.target.refused(err, str(self.cfg.experiment))
            raise refused or self.target.fail(
                f"cannot start a run ({describe_failure(err)})",
                "check the store, or set tracking.enabled=false to train without it",
            ) from None

    def _log_dataset(self) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        data = Dataset(**self.dataset)
        context = InputTag("mlflow.data.context", "training")
        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, [DatasetInput(data, [context])])
                return
            except Exception as err:
                # Parallel jobs on the same data both find the dataset missing and
                # both insert it; the one that loses finds it there next time.
                if attempt == 2 or "UNIQUE constraint" not in str(err):
                    raise
                time.sleep(0.1)

    # --- writing, with retries --------------------------------------------------

    def _try(self, write, budget: float) -> bool:
        """Call ``write()`` until it succeeds or ``budget`` seconds have passed."""
        deadline = time.monotonic() + budget
        delay = 0.5
        while True:
            try:
                write()
                return True
            except (KeyboardInterrupt, Terminated):
                raise
            except Exception as err:
                self.last_error = describe_failure(err)
            if time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 8.0)

    def _warn(self) -> None:
        if not self._warned:
            self._warned = True
            print(
                f"warning: tracking store {self.target.uri}: {self.last_error}; "
                "training goes on, the data is kept and retried",
                file=sys.stderr,
            )

    def flush(self, budget: float = 0.0) -> bool:
        """Write buffered metrics and tags; keep them if the store refuses."""
        from mlflow.entities import RunTag

        def write(metrics=(), tags=()):
            return lambda: self.client.log_batch(
                self.run_id, metrics=list(metrics), tags=list(tags)
            )

        ok = True
        if self._tags:
            batch = [RunTag(k, v) for k, v in self._tags.items()]
            if self._try(write(tags=batch), budget):
                self._tags = {}
            else:
                ok = False
        for chunk in metric_batches(self._metrics) if ok else []:
            if not self._try(write(metrics=chunk), budget):
                ok = False
                break
            self._metrics = self._metrics[len(chunk) :]
        self._last_flush = time.monotonic()
        if not ok:
            self._warn()
        return ok

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        """One evaluation's values, as ``epoch/<name>`` at step ``epoch``."""
        self._add(epoch, {f"{EPOCH_SECTION}/{k}": v for k, v in values.items()})

    def log_metrics(self, values: Mapping[str, float]) -> None:
        """Values of the whole run (``final_*``, ``train_seconds``), at step 0."""
        self._add(0, values)

    def _add(self, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._metrics += [Metric(k, float(v), now, step) for k, v in values.items()]
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

        self._tags.update({k: str(v)[:MAX_TAG_VAL_LENGTH] for k, v in tags.items()})

    def log_artifacts(self, directory: Path) -> None:
        def write():
            self.client.log_artifacts(self.run_id, str(directory))

        if not self._try(write, 0.0):
            self._warn()
            self._artifacts = Path(tempfile.mkdtemp(prefix="mlflow-artifacts-"))
            shutil.copytree(directory, self._artifacts, dirs_exist_ok=True)

    def log_model(self, model, example, classes, factor) -> None:
        """The run's MLflow Model (``serving``); its weights are in the outputs too."""

        from . import serving

        def write() -> None:
            with fluent_target(self.target.uri, self.experiment_id):
                serving.log_model(self.run_id, model, example, classes, factor)

        if not self._try(write, 0.0):
            self._warn()

    # --- the end ----------------------------------------------------------------

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = "FINISHED"
        if exc_type is not None:
            interrupted = issubclass(exc_type, KeyboardInterrupt | Terminated)
            status = "KILLED" if interrupted else "FAILED"
            self.set_tags({"failure_reason": f"{exc_type.__name__}: {exc}"})
        end_time = int(time.time() * 1000)
        with shutting_down():
            self._finish(status, end_time)
        return False

    def _finish(self, status: str, end_time: int) -> None:
        budget = self.retry_seconds
        written = terminated = False
        try:
            written = self.flush(budget)
            if written and self._artifacts is not None:
                artifacts = str(self._artifacts)
                if self._try(
                    lambda: self.client.log_artifacts(self.run_id, artifacts), budget
                ):
                    self._drop_artifacts()
            terminated = self._try(
                lambda: self.client.set_terminated(self.run_id, status, end_time),
                budget if written else 0.0,
            )
        except (KeyboardInterrupt, Terminated):
            pass  # a third signal: keep what is left, below, and stop
        finally:
            if self._metrics or self._tags or self._artifacts or not terminated:
                self._keep(status if not terminated else None, end_time)

    def _keep(self, status: str | None, end_time: int) -> None:
        record = {
            "uri": self.target.uri,
            "experiment": str(self.cfg.experiment),
            "run_id": self.run_id,
            "run_name": self.run_name,
            "tags": self.tags,
            "params": self.params,
            "late_tags": self._tags,
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in self._metrics],
            "status": status,
            "end_time": end_time,
        }
        folder = keep_pending(self.keep_dir, record, self._artifacts)
        self._drop_artifacts()
        print(
            f"warning: tracking store {self.target.uri}: "
            f"{getattr(self, 'last_error', 'interrupted')}; "
            f"kept {len(record['metrics'])} metric values"
            + (f", status {status}" if status else "")
            + f" in {folder}: `python -m mnist_regression.tracking.store replay "
            f"{folder}` writes them into MLflow",
            file=sys.stderr,
        )

    def _drop_artifacts(self) -> None:
        if self._artifacts is not None:
            shutil.rmtree(self._artifacts, ignore_errors=True)
            self._artifacts = None


@contextlib.contextmanager
def fluent_target(uri: str, experiment_id: str):
    """MLflow's fluent API pointed at ``uri`` and the experiment (a logged model's
    home) for the duration, then put back as it was: ``mlflow.set_tracking_uri``
    and ``set_experiment`` also set MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID
    in the environment, which later runs and child processes would inherit."""
    import mlflow

    saved = {
        k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")
    }
    previous = mlflow.get_tracking_uri() if saved["MLFLOW_TRACKING_URI"] else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
