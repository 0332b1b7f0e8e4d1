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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Candidate:
    """A finished job of the workspace's outputs, as the registry sees it."""

    task: str
    val_accuracy: float
    weights_sha256: str  # of its weights.npz: the tag that finds its run
    label: str
    val_loss: float = float("nan")
    val_images: int = 0
    stable: bool = True  # trained at a rate within the stability limit


RULE = (
    "the highest validation accuracy among the finished runs that trained within "
    "the stability limit 2 / (L + lambda) (all of them, if none did); runs within "
    "one validation image of it ranked by validation loss"
)


@dataclass(frozen=True)
class Choice:
    """A task's champion by ``RULE``, and the runner-up it beat."""

    best: Candidate
    runner_up: Candidate | None
    among: int
    left_out: int = 0  # runs beyond the stability limit

    def margin(self) -> str:
        if self.runner_up is None:
            return "no other candidate"
        n = self.best.val_images or 1
        images = round((self.best.val_accuracy - self.runner_up.val_accuracy) * n)
        loss = self.runner_up.val_loss - self.best.val_loss
        more = "more" if images >= 0 else "fewer"
        return (
            f"{abs(images)} validation image{'s' if abs(images) != 1 else ''} "
            f"{more}, a validation loss lower by {loss:.4g}"
        )

    def tags(self) -> dict[str, str]:
        best, n = self.best, self.best.val_images
        k = round(best.val_accuracy * n)
        accuracy = f"{100 * best.val_accuracy:.2f}%"
        if n:
            accuracy = f"{k}/{n} ({accuracy}, 95% interval {interval(k, n)})"
        tags = {
            "selection.rule": RULE,
            "selection.metric": "validation accuracy, then validation loss",
            "selection.val_accuracy": accuracy,
            "selection.val_loss": f"{best.val_loss:.6g}",
            "selection.candidates": str(self.among),
            "selection.left_out": str(self.left_out),
            "selection.margin": self.margin(),
        }
        if self.runner_up is not None:
            tags["selection.runner_up"] = self.runner_up.label
        return tags

    def description(self) -> str:
        said = self.tags()
        runner = (
            f"; runner-up {self.runner_up.label}, by {said['selection.margin']}"
            if self.runner_up
            else ""
        )
        return (
            f"{self.best.label}: {said['selection.val_accuracy']} correct on "
            f"validation, loss {said['selection.val_loss']}; chosen among "
            f"{self.among} finished runs ({self.left_out} beyond the stability "
            f"limit left out) by {RULE}{runner}."
        )


def interval(k: int, n: int) -> str:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return f"{100 * ci.low:.1f}-{100 * ci.high:.1f}%"


def choose(candidates: list[Candidate]) -> Choice:
    """``RULE`` on the candidates of one task, each set of weights once (the
    same settings in two stages train the same weights)."""
    distinct = list({c.weights_sha256: c for c in reversed(candidates)}.values())
    pool = [c for c in distinct if c.stable] or distinct
    top = max(c.val_accuracy for c in pool)
    n = max(c.val_images for c in pool)
    image = 1 / n if n else 0.0  # one validation image, where their number is known

    def rank(c: Candidate) -> tuple:
        near = c.val_accuracy >= top - image - 1e-12
        return (not near, -c.val_accuracy if not near else 0.0, c.val_loss)

    ordered = sorted(pool, key=rank)
    runner_up = ordered[1] if len(ordered) > 1 else None
    return Choice(ordered[0], runner_up, len(pool), len(distinct) - len(pool))


def alias_for(experiment: str | None) -> str:
    """``champion`` for the study in the workspace; inside ``dvc exp run`` the
    experiment's own ``candidate-<name>``, so that no experiment moves the
    champion of what is committed."""
    if not experiment:
        return ALIAS
    return "candidate-" + re.sub(r"[^\w-]", "-", experiment)


def register_champions(
    client, experiment_id: str, candidates: list[Candidate], digits, alias: str
) -> dict:
    """Register, per task, the candidate ``choose`` picks by ``RULE`` and point
    ``alias`` at it; the version's description and ``selection.*`` tags say why
    (its validation accuracy with its interval, the runner-up, the margin). Its
    run is the finished run that wrote those very weights, found by their digest:
    the outputs in the workspace decide, whichever experiment or run cache put
    them there.

    Returns {registered model name: (version, run name)}, or (None, reason) for a
    task whose run is not in the store.
    """
    tasks: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        tasks.setdefault(candidate.task, []).append(candidate)
    registered = {}
    for task, found in tasks.items():
        choice = choose(found)
        candidate = choice.best
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
                description=f"The study's best {task} model: {RULE}",
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


def explain(client, version, choice: Choice) -> None:
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
