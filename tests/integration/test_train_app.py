"""The Hydra app end to end on tiny data, recorded in a throwaway MLflow store."""

import pytest

from .conftest import runs_of

pytestmark = pytest.mark.integration


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
    # lr 500 diverges twice: by overflow with lambda 1; without, the loss only
    # climbs far above its start, which is caught as well
    assert result.stderr.count("error: training diverged") == 2
    assert "sweep: 2 of 4 jobs failed" in result.stderr
    assert "the training loss rose from" in result.stderr
    records = runs_of(client)
    assert len(records) == 4
    assert len({r.data.tags["sweep"] for r in records}) == 1
    statuses = {
        (r.data.params["model.l2"], r.data.params["optimizer.lr"]): r.info.status
        for r in records
    }
    assert statuses[("1.0", "500.0")] == statuses[("0.0", "500.0")] == "FAILED"
    assert statuses[("0.0", "0.1")] == statuses[("1.0", "0.1")] == "FINISHED"
    for failed in (r for r in records if r.info.status == "FAILED"):
        assert "diverged" in failed.data.tags["failure_reason"]
        assert "optimizer.lr=500 is above" in failed.data.tags["failure_reason"]


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
        ("seed=-1", "config key 'seed': must be >= 0"),
        ("study.n_jobs=0", "config key 'study.n_jobs': must be >= 1"),
        ("tracking.retry_seconds=-1", "config key 'tracking.retry_seconds'"),
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
