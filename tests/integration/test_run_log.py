"""The MLflow adapter against a real SQLite store: what it leaves in the
environment, and a race between parallel jobs on the same data."""

import os

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mnist_regression.tracking.writer import MlflowRun, fluent_target

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("before", [None, "sqlite:///elsewhere.db"])
def test_the_environment_is_put_back(tmp_path, monkeypatch, before):
    """``mlflow.set_tracking_uri`` exports MLFLOW_TRACKING_URI, which a later run
    of the same process, or a child process, would take for its own target."""
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


def test_a_dataset_inserted_meanwhile_by_a_parallel_job_is_linked(
    tmp_path, monkeypatch
):
    """Two jobs on the same data both find its dataset missing and both insert
    it: the loser's insert fails on the store's unique key. Its run still gets
    the dataset input, found on a second try."""
    from mlflow.exceptions import MlflowException
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "enabled": True,
            "uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "experiment": "runs",
            "artifacts": False,
            "retry_seconds": 1,
        }
    )
    dataset = {
        "name": "pixels",
        "digest": "abc123",
        "source_type": "local",
        "source": "{}",
        "schema": "{}",
        "profile": "{}",
    }
    run = MlflowRun(cfg, "job", {}, {}, tmp_path, dataset)
    real = None

    def lose_the_race_once(run_id, datasets):
        run.client.log_inputs = real  # the other job has inserted it by now
        raise MlflowException(
            "(sqlite3.IntegrityError) UNIQUE constraint failed: "
            "datasets.experiment_id, datasets.name, datasets.digest"
        )

    original = MlflowRun._log_dataset

    def racing(self):
        nonlocal real
        real = self.client.log_inputs
        self.client.log_inputs = lose_the_race_once
        original(self)

    monkeypatch.setattr(MlflowRun, "_log_dataset", racing)
    with run:
        pass
    (found,) = MlflowClient(cfg.uri).get_run(run.run_id).inputs.dataset_inputs
    assert found.dataset.digest == "abc123"
