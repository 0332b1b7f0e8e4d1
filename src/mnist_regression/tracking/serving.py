"""A trained model as an MLflow Model, and the study's best models in the registry.

Every tracked run logs ``model``: a pyfunc whose input is a float32 array of
pixels in [0, 1] (n, 784) and whose output is the predicted class (for 2 vs 3:
1 for the first digit of ``data.digits``, 0 for the second). Load it with
``mlflow.pyfunc.load_model("runs:/<run id>/model")`` or serve it with
``mlflow models predict -m runs:/<run id>/model -i images.json --env-manager local``.

``register_champions`` registers the best job of each task among the training
outputs in the workspace and points the alias ``champion`` at its run (inside
``dvc exp run``: ``candidate-<experiment>``).
"""

from __future__ import annotations

import re
import tempfile
import warnings
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np

from ..core.models import LinearModel
from .provenance import REUSED_TAG, WEIGHTS_TAG

PACKAGE = Path(__file__).resolve().parent


def registered_name(task: str, digits) -> str:
    """The registered model of a task: ``mnist-logistic-2-vs-3`` for the binary
    task of ``data.digits`` [2, 3], ``mnist-softmax-10-digits``."""
    if task == "binary":
        positive, negative = (int(d) for d in digits)
        return f"mnist-logistic-{positive}-vs-{negative}"
    return "mnist-softmax-10-digits"


ALIAS = "champion"


def log_model(
    run_id: str,
    model: LinearModel,
    example: np.ndarray,
    classes: list[int],
    factor: float = 1.0,
) -> None:
    """Log ``model`` to the run as the MLflow Model ``model``: its input, pixels in
    [0, 1], times ``factor`` are what the model trained on (255 / data.scale); it
    predicts the digit ``classes[c]`` for class c. With signature and input example
    (the tracking URI must be set, as ``index.fluent_target`` does)."""
    from mlflow.models import Model, infer_signature

    example = np.asarray(example, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    factor = np.float32(factor)
    signature = infer_signature(example, classes[model.predict(example * factor)])
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # MLflow asks for type hints that it cannot use for a NumPy array input
        warnings.filterwarnings("ignore", ".*Add type hints", UserWarning)
        weights = Path(tmp) / "weights.npz"
        np.savez(
            weights,
            weights=model.weights,
            bias=model.bias,
            classes=classes,
            factor=factor,
        )
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


def alias_for(experiment: str | None) -> str:
    """``champion`` for the study in the workspace; inside ``dvc exp run`` the
    experiment's own ``candidate-<name>``, so that no experiment moves the
    champion of what is committed."""
    if not experiment:
        return ALIAS
    return "candidate-" + re.sub(r"[^\w-]", "-", experiment)


def register_champions(client, experiment_id: str, choices, digits, alias: str) -> dict:
    """Register each task's pick (``choices``: one ``study.champion.Choice`` per
    task: its ``best`` candidate and why) and point ``alias`` at it; the
    version's description and ``selection.*`` tags say why. Its run is the
    finished run that wrote those very weights, found by their digest: the
    outputs in the workspace decide, whichever experiment or run cache put them
    there.

    Returns {registered model name: (version, run name)}, or (None, reason) for a
    task whose run is not in the store.
    """
    registered = {}
    for choice in choices:
        candidate, task = choice.best, choice.best.task
        name = registered_name(task, digits)
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.{WEIGHTS_TAG} = '{candidate.weights_sha256}' "
            "and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            registered[name] = (
                None,
                f"no finished run in the store wrote {candidate.label}'s weights",
            )
            continue
        run = runs[0]
        if REUSED_TAG in run.data.tags:  # a copy: its model is the original's
            run = client.get_run(run.data.tags[REUSED_TAG])
        try:
            current = client.get_model_version_by_alias(name, alias)
        except Exception:  # no such model or alias yet
            current = None
        if current is not None and current.run_id == run.info.run_id:
            explain(client, current, choice)
            registered[name] = (current.version, run.info.run_name)
            continue
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(
                name,
                description=f"The study's best {task} model: {choice.rule}",
            )
        # MLflow 3 keeps a logged model apart from its run: the version points at
        # its artifacts, so that models:/<name>@champion loads
        source, model_id = logged_model_of(client, run)
        version = client.create_model_version(
            name, source, run_id=run.info.run_id, model_id=model_id
        )
        client.set_registered_model_alias(name, alias, version.version)
        explain(client, version, choice)
        registered[name] = (version.version, run.info.run_name)
    return registered


def explain(client, version, choice) -> None:
    """The version's description and tags: why it was chosen."""
    client.update_model_version(
        version.name, version.version, description=choice.description()
    )
    for key, value in choice.tags().items():
        client.set_model_version_tag(version.name, version.version, key, value)


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
