"""A trained model as an MLflow Model, and the study's best models in the registry.

Every tracked run logs ``model``: a pyfunc whose input is a float32 array of
pixels in [0, 1] (n, 784) and whose output is the predicted class (for 2 vs 3:
1 for the first digit of ``data.digits``, 0 for the second). Load it with
``mlflow.pyfunc.load_model("runs:/<run id>/model")`` or serve it with
``mlflow models predict -m runs:/<run id>/model -i images.json --env-manager local``.

``register_champions`` registers the best run of each task among the pipeline's
latest training stages and points the alias ``champion`` at it.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np

from ..core.models import LinearModel

PACKAGE = Path(__file__).resolve().parent


def registered_name(task: str, digits) -> str:
    """The registered model of a task: ``mnist-logistic-2-vs-3`` for the binary
    task of ``data.digits`` [2, 3], ``mnist-softmax-10-digits``."""
    if task == "binary":
        positive, negative = (int(d) for d in digits)
        return f"mnist-logistic-{positive}-vs-{negative}"
    return "mnist-softmax-10-digits"


ALIAS = "champion"


def log_model(run_id: str, model: LinearModel, example: np.ndarray) -> None:
    """Log ``model`` to the run as the MLflow Model ``model``, with signature and
    input example (the tracking URI must be set, as ``MlflowRun`` does)."""
    from mlflow.models import Model, infer_signature

    example = np.asarray(example, dtype=np.float32)
    signature = infer_signature(example, model.predict(example))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # MLflow asks for type hints that it cannot use for a NumPy array input
        warnings.filterwarnings("ignore", ".*Add type hints", UserWarning)
        weights = Path(tmp) / "weights.npz"
        np.savez(weights, weights=model.weights, bias=model.bias)
        Model.log(
            artifact_path=None,
            name="model",
            flavor=mlflow.pyfunc,
            run_id=run_id,
            python_model=str(PACKAGE / "pyfunc_model.py"),
            artifacts={"weights": str(weights)},
            signature=signature,
            input_example=example,
            pip_requirements=[
                f"numpy=={np.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
        )


def register_champions(client, experiment_id: str, stages: list[str], digits) -> dict:
    """Register, per task, the finished run with the best validation accuracy among
    the latest sweep of each of ``stages``; alias it ``champion``.

    Returns {registered model name: (version, run name)}.
    """
    best: dict[str, object] = {}
    for stage in stages:
        parents = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`dvc.stage` = '{stage}' and tags.sweep_grid != ''",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not parents:
            continue
        for run in client.search_runs(
            [experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parents[0].info.run_id}' "
            "and attributes.status = 'FINISHED'",
            max_results=1000,
        ):
            task = run.data.tags.get("task")
            accuracy = run.data.metrics.get("final_val_accuracy", -1.0)
            current = best.get(task)
            if current is None or accuracy > current.data.metrics["final_val_accuracy"]:
                best[task] = run
    registered = {}
    for task, run in best.items():
        name = registered_name(task, digits)
        # MLflow 3 keeps a logged model apart from its run: the version points at
        # its artifacts, so that models:/<name>@champion loads
        source, model_id = logged_model_of(client, run)
        try:
            current = client.get_model_version_by_alias(name, ALIAS)
        except Exception:  # no such model or alias yet
            current = None
        if current is not None and current.run_id == run.info.run_id:
            registered[name] = (current.version, run.info.run_name)
            continue
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(
                name,
                description=f"The study's best {task} model, by validation accuracy",
            )
        version = client.create_model_version(
            name, source, run_id=run.info.run_id, model_id=model_id
        )
        client.set_registered_model_alias(name, ALIAS, version.version)
        registered[name] = (version.version, run.info.run_name)
    return registered


def logged_model_of(client, run) -> tuple[str, str | None]:
    """(source, model id) of the model ``run`` logged, for a registry version: the
    logged model's own artifact location where MLflow has one. (A ``models:/m-...``
    source would be looked up in MLflow's global tracking URI, not the client's.)"""
    found = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}' and name = 'model'",
        max_results=1,
    )
    if found:
        return found[0].artifact_location, found[0].model_id
    return f"runs:/{run.info.run_id}/model", None
