"""The team server's app: MLflow's basic-auth, and artifacts only under its root.

``mlflow server --app-name mnist-regression`` (registered in ``pyproject.toml``
under ``mlflow.app``; ``python -m mnist_regression.tracking.server`` starts it)
is MLflow's ``basic-auth`` app with one rule more: an experiment is created with
no artifact location, or one under the server's own artifact root
(``mlflow-artifacts:/``, served from ``--artifacts-destination``). Without it,
any logged-in user could point an experiment at a path or bucket of the
server's, which the server would then read and write on that user's behalf.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SERVED = "mlflow-artifacts"
CREATE_EXPERIMENT = "/mlflow/experiments/create"


def refusal(location: str | None) -> str | None:
    """Why ``location`` may not be an experiment's artifact location, or None."""
    if not location:
        return None
    parts = urlsplit(location)
    inside = parts.scheme == SERVED and not parts.netloc
    if inside and ".." not in parts.path.split("/"):
        return None
    return (
        f"artifact_location {location!r} is refused: this server keeps every "
        "experiment's artifacts under its own root; create the experiment without "
        f"an artifact location (or under {SERVED}:/)"
    )


def create_app():
    """basic-auth's app (Flask, or FastAPI around it under uvicorn), with the
    artifact-location rule checked after basic-auth's own checks."""
    from flask import jsonify, request
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app as basic_auth

    served = basic_auth(flask_app)

    @flask_app.before_request
    def artifacts_under_the_root():
        if request.method != "POST" or not request.path.endswith(CREATE_EXPERIMENT):
            return None
        body = request.get_json(silent=True) or {}
        reason = refusal(body.get("artifact_location"))
        if reason is None:
            return None
        return jsonify(error_code="PERMISSION_DENIED", message=reason), 403

    return served
