"""What a run logs, and how: every MLflow run the project writes starts here.

A training run (``open_run``, then ``log_outcome``) records
- params: every value of its resolved config (``optimizer.lr`` is the rate used,
  also under ``lr=auto``);
- tags: ``model``, ``task``, ``data_sha256``, the source (``provenance``: commit,
  ``git_dirty``, ``dvc.stage``, ``dvc.experiment``), ``host``, ``pid``,
  ``hydra_overrides``, in a sweep ``sweep``, ``sweep_job`` and its parent run;
  at the end ``stop_reason`` (or ``failure_reason``);
- its dataset (the prepared file, by digest) as an input;
- per evaluation: the losses and accuracies of each split, ``weight_norm`` and
  ``learning_rate``; at the end the ``final_*`` metrics of the best epoch,
  ``best_epoch``, ``epochs_run`` and ``train_seconds``;
- artifacts: ``config.yaml``, ``weights.npz``, the weights as images, and the
  MLflow Model ``model`` (``serving``).
A sweep's parent run (``SweepRun``) records its grid as params, the tags
``sweep_grid`` and ``sweep``, and when it ends its best job (``best_run_id``,
``best_run_name``, ``best_final_*``), ``jobs_finished`` and ``curves.png``.

MLflow sits behind a small interface; ``NullRun`` stands in when tracking is off.

The target (``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else
``sqlite:///<root>/mlruns/mlflow.db`` with artifacts in ``<root>/mlruns/artifacts``,
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
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..common.cli import check_stop, shutting_down
from ..common.errors import Terminated
from ..common.io import save_npz
from . import provenance
from .liveness import mark_stale_runs, process_tags
from .pending import keep_pending
from .session import log_params, metric_batches, open_session
from .target import describe_failure, resolve_target

# Set by a sweep's main process: the MLflow run its jobs are children of.
PARENT_RUN_VARIABLE = "MNIST_REGRESSION_PARENT_RUN"


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

    def log_model(self, model, example) -> None:
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
            raise self.target.fail(
                f"cannot start a run ({describe_failure(err)})",
                "check the store, or set tracking.enabled=false to train without it",
            ) from None
        return self

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
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._metrics += [Metric(k, float(v), now, epoch) for k, v in values.items()]
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def log_metrics(self, values: Mapping[str, float]) -> None:
        self.log_epoch(0, values)

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

    def log_model(self, model, example) -> None:
        """The run's MLflow Model (``serving``); its weights are in the outputs too."""

        from . import serving

        def write() -> None:
            with fluent_target(self.target.uri, self.experiment_id):
                serving.log_model(self.run_id, model, example)

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


def open_run(
    cfg: DictConfig, run_name: str, params, tags, keep_dir: Path, dataset=None
) -> NullRun:
    """The run of one training job (not yet started: use it as a context)."""
    if not cfg.enabled:
        return NullRun()
    return MlflowRun(cfg, run_name, params, tags, keep_dir, dataset)


def training_tags(kind: str, task: str, digest: str, extra: Mapping[str, str]):
    """The tags a training run starts with (``extra``: the app's own)."""
    tags = {
        "model": kind,
        "task": task,
        "data_sha256": digest,
        **provenance.source_tags(),
        **extra,
    }
    if os.environ.get(PARENT_RUN_VARIABLE):
        tags["mlflow.parentRunId"] = os.environ[PARENT_RUN_VARIABLE]
    return tags


def log_outcome(run: NullRun, result, seconds: float, title: str, example) -> None:
    """What a finished training run adds: its final metrics, why it stopped, and,
    where ``tracking.artifacts`` asks for them, its artifacts and model."""
    run.log_metrics({**result.final, "train_seconds": seconds})
    run.set_tags({"stop_reason": result.history.stop_reason})
    if result.config["tracking"]["artifacts"] and run.run_id:
        log_artifacts(run, result.model, result.labels, result.config, title)
        run.log_model(result.model, example)


def log_artifacts(run, model, labels, config: dict, title: str) -> None:
    """``config.yaml``, ``weights.npz`` and the weights as images."""
    from ..figures import run_figures

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        save_npz(out / "weights.npz", {"weights": model.weights, "bias": model.bias})
        run_figures.save_weight_pngs(model, labels, out, title)
        run.log_artifacts(out)


class SweepRun:
    """The MLflow parent run of a multirun: its grid, then its best job.

    Created once in the main process before any job starts (jobs started in
    parallel would race to create it); jobs find its id in the environment.
    """

    def __init__(self) -> None:
        self.client = self.run_id = None

    def open(self, tracking: DictConfig, grid: dict[str, str], folder: str) -> None:
        """Start the parent run in ``tracking``'s store, for the sweep of ``grid``
        whose Hydra folder is ``folder``."""
        session = open_session(tracking.uri)
        target = session.target
        stage = os.environ.get("DVC_STAGE")
        name = f"{stage or 'sweep'}: " + " ".join(f"{k}={v}" for k, v in grid.items())
        try:
            self.client = session.client
            experiment = session.experiment_id(tracking.experiment)
            run = self.client.create_run(
                experiment,
                run_name=name,
                tags={
                    "sweep_grid": json.dumps(grid),
                    "sweep": folder,
                    **provenance.source_tags(),
                    **process_tags(),
                },
            )
        except Exception as err:
            check_stop()  # an interrupt that a library turned into another error
            raise target.fail(
                f"cannot start the sweep's run ({describe_failure(err)})",
                "check the store, or set tracking.enabled=false",
            ) from None
        self.run_id = run.info.run_id
        os.environ[PARENT_RUN_VARIABLE] = self.run_id
        for key, values in grid.items():
            self.client.log_param(self.run_id, key, values)

    def close(self, status: str, curves: list | None = None) -> None:
        """Record the best job (lowest final validation loss), the validation
        curves of the finished jobs (``curves``: (label, History) pairs, if
        given), and end the run."""
        if self.run_id is None:
            return
        run_id, self.run_id = self.run_id, None
        os.environ.pop(PARENT_RUN_VARIABLE, None)
        try:
            parent = self.client.get_run(run_id)
            if curves:
                self.log_curves(run_id, parent.info.run_name, curves)
            mark_stale_runs(self.client, [parent.info.experiment_id])
            children = self.client.search_runs(
                [parent.info.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{run_id}' "
                "and attributes.status = 'FINISHED'",
                order_by=["metrics.final_val_loss ASC"],
                max_results=1000,
            )
            if children:
                best = children[0]
                self.client.set_tag(run_id, "best_run_id", best.info.run_id)
                self.client.set_tag(run_id, "best_run_name", best.info.run_name)
                for key in (
                    "final_val_loss",
                    "final_val_accuracy",
                    "final_test_accuracy",
                ):
                    if key in best.data.metrics:
                        self.client.log_metric(
                            run_id, f"best_{key}", best.data.metrics[key]
                        )
            self.client.log_metric(run_id, "jobs_finished", len(children))
            self.client.set_terminated(run_id, status)
        except (
            Exception
        ) as err:  # the jobs' runs are recorded; only the summary is lost
            print(
                f"warning: could not close the sweep's MLflow run {run_id}: "
                f"{describe_failure(err)}",
                file=sys.stderr,
            )

    def log_curves(self, run_id: str, name: str, labelled: list) -> None:
        """``curves.png``: the finished jobs' validation curves, side by side."""
        from ..figures.drawing import save, sweep_figure

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "curves.png"
            save(sweep_figure(labelled, name), path)
            self.client.log_artifact(run_id, str(path))
