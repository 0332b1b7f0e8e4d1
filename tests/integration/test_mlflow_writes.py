"""Writing MLflow against a real SQLite store: what it leaves in the
environment, a race between commands on the same data, the default store."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mnist_regression.tracking.index import fluent_target, log_dataset

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("before", [None, "sqlite:///elsewhere.db"])
def test_the_environment_is_put_back(tmp_path, monkeypatch, before):
    """``mlflow.set_tracking_uri`` exports MLFLOW_TRACKING_URI, which a later run
    of the same process, or a child process, would take for its own target."""
    monkeypatch.chdir(tmp_path)  # where a relative store would be made
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


def test_a_dataset_inserted_meanwhile_by_another_command_is_linked(tmp_path):
    """Two commands on the same data both find its dataset missing and both
    insert it: the loser's insert fails on the store's unique key. Its run still
    gets the dataset input, found on a second try."""
    from mlflow.exceptions import MlflowException

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("runs"))
    dataset = {
        "name": "pixels",
        "digest": "abc123",
        "source_type": "local",
        "source": "{}",
        "schema": "{}",
        "profile": "{}",
    }
    real = client.log_inputs

    def lose_the_race_once(run_id, datasets):
        client.log_inputs = real  # the other command has inserted it by now
        raise MlflowException(
            "(sqlite3.IntegrityError) UNIQUE constraint failed: "
            "datasets.experiment_id, datasets.name, datasets.digest"
        )

    client.log_inputs = lose_the_race_once
    log_dataset(client, run.info.run_id, dataset)
    (found,) = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert found.dataset.digest == "abc123"


def test_the_default_store_is_where_plain_mlflow_looks(tmp_path, monkeypatch):
    """With no tracking URI anywhere, the project's store is MLflow 3's default
    (``sqlite:///mlflow.db`` in the working folder, artifacts in ``mlruns/``), so
    ``mlflow ui`` or a client started in the root reads the study; a store made
    by an older version under ``mlruns/`` moves there with its runs."""
    from mnist_regression.tracking.session import open_session
    from mnist_regression.tracking.target import OLD_DEFAULT

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    old = open_session(f"sqlite:///{tmp_path / OLD_DEFAULT}")
    run = old.client.create_run(old.experiment_id("study"))

    session = open_session(None)  # tracking.uri unset
    assert not (tmp_path / OLD_DEFAULT).exists()
    listed = subprocess.run(  # MLflow's own default, in this folder
        [str(Path(sys.executable).parent / "mlflow"), "runs", "list"]
        + ["--experiment-id", run.info.experiment_id],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "DVC_ROOT"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.info.run_id in listed.stdout
    new = session.client.create_run(session.experiment_id("study2"))
    session.client.log_text(new.info.run_id, "x", "note.txt")
    assert (tmp_path / "mlruns").is_dir()
    assert list((tmp_path / "mlruns").rglob("note.txt"))
