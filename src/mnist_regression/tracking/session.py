"""One way to open a tracking session: resolve the target, check it, and return
an ``MlflowClient`` on it with the experiment the project's runs go to.

Every writer of the project's runs (a run, a sweep's parent run, the report's
registration, the replay of kept data, the store's command line) starts here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .target import Target, artifact_root, prepare_target, resolve_target

EXPERIMENT_TAGS = {
    # the UI opens a model-training experiment on its runs (not on GenAI traces)
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": (
        "Logistic regression (MNIST 2 vs 3) and softmax regression (10 digits) in "
        "NumPy, after a 2019 course study; `dvc repro` rebuilds the whole study.\n\n"
        "A run is named after its model and every setting that differs from the "
        "defaults in conf/ (e.g. `softmax l2=0.01 lr=0.1`). A sweep (Hydra multirun, "
        "and so each DVC training stage) is a parent run with its jobs as children; "
        "the parent records the grid and its best job. Tags: `dvc.stage`, "
        "`dvc.experiment` (inside `dvc exp run`), `mlflow.source.git.commit`, "
        "`git_dirty`, `data_sha256`, `host`, `pid`."
    ),
}


@dataclass
class Session:
    """A checked target and a client on it."""

    target: Target
    client: Any  # mlflow.tracking.MlflowClient

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created (with its kind and description) if new."""
        return experiment_id(self.client, self.target, name)

    def find_experiment(self, name: str) -> str | None:
        """The experiment's id, or None where it does not exist."""
        found = self.client.get_experiment_by_name(name)
        return found and found.experiment_id


def open_session(target: Target | str | None = None) -> Session:
    """A session on ``target`` (a Target, a URI, or None: ``tracking.uri`` unset),
    checked first; raises StoreError naming the setting if it cannot be used."""
    from mlflow.tracking import MlflowClient

    if not isinstance(target, Target):
        target = resolve_target(target)
    prepare_target(target)
    return Session(target, MlflowClient(target.uri))


def experiment_id(client, target: Target, name: str) -> str:
    """The experiment's id, creating it (with its kind and description) if new."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        artifacts = None
        if target.sqlite_path is not None:
            artifacts = artifact_root(target.sqlite_path)
        try:
            return client.create_experiment(
                name, artifact_location=artifacts, tags=EXPERIMENT_TAGS
            )
        except Exception:  # created meanwhile by a parallel job
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if "mlflow.experimentKind" not in experiment.tags:  # made by an older version
        for key, value in EXPERIMENT_TAGS.items():
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def log_params(client, run_id: str, params: Mapping[str, str]) -> None:
    """Parameters in batches of MLflow's largest size per call."""
    from mlflow.entities import Param
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

    batch = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
    for start in range(0, len(batch), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(
            run_id, params=batch[start : start + MAX_PARAMS_TAGS_PER_BATCH]
        )


def log_metrics(client, run_id: str, values: Mapping[str, float]) -> None:
    """Single values (step 0, one timestamp) in batches of MLflow's largest size."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [Metric(key, float(value), now, 0) for key, value in values.items()]
    for batch in metric_batches(points):
        client.log_batch(run_id, metrics=batch)


def metric_batches(metrics: list) -> list[list]:
    """``metrics`` cut into batches of MLflow's largest size per call."""
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH

    size = MAX_METRICS_PER_BATCH
    return [metrics[i : i + size] for i in range(0, len(metrics), size)]
