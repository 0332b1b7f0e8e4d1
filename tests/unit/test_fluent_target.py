"""Logging a model through MLflow's fluent API leaves no trace in the environment:
``mlflow.set_tracking_uri`` exports MLFLOW_TRACKING_URI, which a later run of
the same process, or any child process, would take for its own target."""

import os

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mnist_regression.tracking import fluent_target


@pytest.mark.parametrize("before", [None, "sqlite:///elsewhere.db"])
def test_the_environment_is_put_back(tmp_path, monkeypatch, before):
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(key, raising=False)
    if before:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", before)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = MlflowClient(uri).create_experiment("runs")
    with fluent_target(uri, experiment):
        assert mlflow.get_tracking_uri() == uri
        assert os.environ["MLFLOW_EXPERIMENT_ID"] == experiment
    assert os.environ.get("MLFLOW_TRACKING_URI") == before
    assert "MLFLOW_EXPERIMENT_ID" not in os.environ
