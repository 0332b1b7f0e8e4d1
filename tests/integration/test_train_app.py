"""The Hydra app end to end on tiny data, recorded in a throwaway MLflow store."""

import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from mnist_regression.data.prepare import prepare

from .conftest import BIN, run

pytestmark = pytest.mark.integration


@pytest.fixture
def app(data_cfg, tmp_path):
    """The app on the tiny data set, tracked in tmp_path."""
    prepare(data_cfg, seed=0)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    base = [
        sys.executable,
        "-m",
        "mnist_regression.train",
        f"data.prepared_dir={data_cfg.prepared_dir}",
        f"data.train_size={data_cfg.train_size}",
        f"data.val_fraction={data_cfg.val_fraction}",
        f"tracking.uri={uri}",
        f"hydra.run.dir={tmp_path / 'outputs'}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]

    def command(*overrides) -> list[str]:
        flags = [o for o in overrides if o.startswith("-")]
        return [*base[:3], *flags, *base[3:], *(o for o in overrides if o not in flags)]

    def launch(*overrides, check=True):
        if check:
            return run(command(*overrides), tmp_path)
        return subprocess.run(
            command(*overrides), cwd=tmp_path, capture_output=True, text=True
        )

    return SimpleNamespace(command=command, launch=launch, client=MlflowClient(uri))


def runs_of(client):
    experiment = client.get_experiment_by_name("mnist-regression")
    return client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


def test_a_run_records_config_metrics_tags_and_artifacts(app):
    launch, client = app.launch, app.client
    result = launch("optimizer.max_epochs=4", "optimizer.patience=10")
    assert "logistic" in result.stdout and "test accuracy" in result.stdout
    (record,) = runs_of(client)
    assert record.info.status == "FINISHED"
    assert record.data.params["model.l2"] == "0.0"
    assert record.data.params["optimizer.max_epochs"] == "4"
    tags = record.data.tags
    assert tags["model"] == "logistic" and tags["task"] == "binary"
    assert len(tags["data_sha256"]) == 64 and tags["git_commit"]
    assert "optimizer.max_epochs=4" in tags["hydra_overrides"]
    history = client.get_metric_history(record.info.run_id, "val_loss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    for name in ("train_accuracy", "test_loss", "weight_norm", "learning_rate"):
        assert len(client.get_metric_history(record.info.run_id, name)) == 5
    assert record.data.metrics["epochs_run"] == 4
    assert {"final_test_accuracy", "final_val_accuracy", "best_epoch"} <= set(
        record.data.metrics
    )
    artifacts = {a.path for a in client.list_artifacts(record.info.run_id)}
    assert {"config.yaml", "weights.npz", "weights_grid.png", "curves.png"} <= artifacts
    images = client.list_artifacts(record.info.run_id, "weights")
    assert [a.path for a in images] == ["weights/2 vs 3.png"]


def test_multirun_sweep_is_grouped_and_survives_a_diverging_job(app):
    launch, client = app.launch, app.client
    result = launch(
        "-m",
        "model=softmax",
        "model.l2=0,1",
        "optimizer.lr=0.1,500",
        "optimizer.max_epochs=30",
        "optimizer.patience=30",
    )
    assert "training diverged" in result.stderr
    records = runs_of(client)
    assert len(records) == 4
    assert len({r.data.tags["sweep"] for r in records}) == 1
    statuses = {
        (r.data.params["model.l2"], r.data.params["optimizer.lr"]): r.info.status
        for r in records
    }
    assert statuses[("1.0", "500.0")] == "FAILED"
    assert statuses[("0.0", "0.1")] == statuses[("1.0", "0.1")] == "FINISHED"
    failed = next(r for r in records if r.info.status == "FAILED")
    assert "diverged" in failed.data.tags["failure_reason"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1", "config key 'optimizer.lr': must be > 0"),
        ("model.l2=-0.5", "config key 'model.l2': must be >= 0"),
        ("optimizer.batch_size=0", "config key 'optimizer.batch_size'"),
        ("optimizer.patience=0", "config key 'optimizer.patience': must be >= 1"),
        ("optimizer.batch_size=many", "'optimizer.batch_size': Value 'many'"),
        ("optimizer.lrr=1", "Key 'lrr' is not in struct"),
        ("model=svm", "Could not find 'model/svm'"),
    ],
)
def test_bad_config_fails_before_training_without_traceback(app, override, message):
    launch, client = app.launch, app.client
    result = launch(override, check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    experiment = client.get_experiment_by_name("mnist-regression")
    assert experiment is None or not runs_of(client)


def test_sigterm_ends_the_run_as_killed(app, tmp_path):
    client = app.client
    process = subprocess.Popen(
        app.command(
            "optimizer.max_epochs=100000000",
            "optimizer.patience=100000000",
            "optimizer.lr=0.0001",
        ),
        cwd=tmp_path,
        env={"PATH": f"{BIN}:/usr/bin:/bin"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name("mnist-regression")
        if experiment and runs_of(client):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    (record,) = runs_of(client)
    assert record.info.status == "KILLED"
    assert len(client.get_metric_history(record.info.run_id, "val_loss")) > 1
