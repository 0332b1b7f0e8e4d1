"""The MLflow adapter against a real SQLite store: what it leaves in the
environment, and a race between parallel jobs on the same data."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mnist_regression.tracking.writer import MlflowRun, fluent_target

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


def test_a_signal_while_a_run_starts_ends_it_killed(tmp_path, monkeypatch):
    """Ctrl-C after the store created the run but before it was ready to use:
    the run ends KILLED, as one interrupted later would, not RUNNING."""
    from omegaconf import OmegaConf

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = OmegaConf.create(
        {"uri": uri, "experiment": "runs", "artifacts": False, "retry_seconds": 1}
    )

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(MlflowRun, "_log_dataset", interrupted)
    with (
        pytest.raises(KeyboardInterrupt),
        MlflowRun(cfg, "job", {}, {}, tmp_path, {"name": "x"}),
    ):
        pass
    client = MlflowClient(uri)
    (record,) = client.search_runs(
        [client.get_experiment_by_name("runs").experiment_id]
    )
    assert record.info.status == "KILLED"
