"""The Hydra app end to end on tiny data, recorded in a throwaway MLflow store."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from .conftest import BIN, run, runs_of

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
    assert len(tags["data_sha256"]) == 64
    assert tags["mlflow.source.name"] == "mnist_regression.train"
    assert len(tags["mlflow.source.git.commit"]) == 40
    assert tags["git_dirty"] in ("true", "false")
    # every setting that differs from conf/, the tiny data set's included
    assert record.info.run_name == (
        "logistic patience=10 max_epochs=4 train_size=50 val_fraction=0.2"
    )
    (dataset,) = record.inputs.dataset_inputs
    assert dataset.dataset.name == "mnist-binary"
    assert dataset.dataset.digest == tags["data_sha256"][:36]
    experiment = client.get_experiment_by_name("mnist-regression")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "named after its model" in experiment.tags["mlflow.note.content"]
    assert "optimizer.max_epochs=4" in tags["hydra_overrides"]
    history = client.get_metric_history(record.info.run_id, "epoch/val_loss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    for name in ("train_accuracy", "test_loss", "weight_norm", "learning_rate"):
        assert len(client.get_metric_history(record.info.run_id, f"epoch/{name}")) == 5
    assert record.data.metrics["epochs_run"] == 4
    assert 0 < record.data.metrics["train_seconds"] < 60
    assert {"final_test_accuracy", "final_val_accuracy", "best_epoch"} <= set(
        record.data.metrics
    )
    artifacts = {a.path for a in client.list_artifacts(record.info.run_id)}
    assert {"config.yaml", "weights.npz", "weights_grid.png"} <= artifacts
    images = client.list_artifacts(record.info.run_id, "weights")
    assert [a.path for a in images] == ["weights/2-vs-3.png"]
    local = client.download_artifacts(record.info.run_id, "weights/2-vs-3.png")
    header = Path(local).read_bytes()[:24]
    width, height = struct.unpack(">II", header[16:24])
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and min(width, height) >= 224


def test_multirun_sweep_is_grouped_and_survives_a_diverging_job(app, tmp_path):
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
    # off a terminal, each job says when it starts and ends, in its train.log too
    assert result.stdout.count(": started") == 4
    assert result.stdout.count(": best epoch") == 2
    logs = sorted((tmp_path / "multirun").glob("*/train.log"))
    assert len(logs) == 4 and all(": started" in p.read_text() for p in logs)
    assert "the training loss rose from" in result.stderr
    records = app.jobs()
    assert len(records) == 4
    assert len({r.data.tags["sweep"] for r in records}) == 1
    names = [r.info.run_name for r in records]
    assert len(set(names)) == 4 and "softmax l2=1 lr=500" in " | ".join(names)
    (parent,) = [r for r in runs_of(client) if "sweep_grid" in r.data.tags]
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in records} == {parent.info.run_id}
    assert json.loads(parent.data.tags["sweep_grid"]) == {
        "model.l2": "0,1",
        "optimizer.lr": "0.1,500",
    }
    finished = [r for r in records if r.info.status == "FINISHED"]
    lowest = min(r.data.metrics["final_val_loss"] for r in finished)
    assert parent.data.metrics["best_final_val_loss"] == lowest
    best = {
        r.info.run_id for r in finished if r.data.metrics["final_val_loss"] == lowest
    }
    assert parent.data.tags["best_run_id"] in best
    # the finished jobs' curves side by side, on the parent
    (curves,) = client.list_artifacts(parent.info.run_id)
    assert curves.path == "curves.png" and curves.file_size > 10_000
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
        ("optimizer.lr=fast", "must be > 0, or auto (a stable rate from the data)"),
        ("model.l2=-0.5", "config key 'model.l2': must be >= 0"),
        ("optimizer.batch_size=0", "config key 'optimizer.batch_size'"),
        ("optimizer.patience=0", "config key 'optimizer.patience': must be >= 1"),
        ("optimizer.batch_size=many", "'optimizer.batch_size': Value 'many'"),
        ("optimizer.lrr=1", "Key 'lrr' is not in struct"),
        ("model=svm", "Could not find 'model/svm'"),
        ("seed=-1", "config key 'seed': must be >= 0"),
        ("study.n_jobs=0", "config key 'study.n_jobs': must be >= 1"),
        ("data.scale=0", "config key 'data.scale': must be > 0"),
        ("model.bias=maybe", "expected one of [free, penalised, none]"),
        ("optimizer.stop_when=never", "expected one of [no_new_best, rising]"),
        ("optimizer.monitor=x", "expected one of [loss, objective, scaled_objective]"),
        ("optimizer.average=mean", "expected one of [none, epoch]"),
        ("optimizer.restore_best=perhaps", "'optimizer.restore_best': Value"),
        ("optimizer.anneal_k=inf", "'optimizer.anneal_k': must be a finite number"),
        ("tracking.experiment=''", "'tracking.experiment': must name an MLflow"),
        ("output_dir=/proc/out", "'output_dir': cannot write in /proc/out"),
        (
            "tracking.uri=http://alice:secret@127.0.0.1:1",
            "'tracking.uri': holds a password",
        ),
        ("output_dir=/etc/hostname", "'output_dir': /etc/hostname is a file"),
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


def test_the_registered_champion_loads_and_predicts_digits(app, tmp_path, monkeypatch):
    """The report registers the best job of the workspace's outputs, found in the
    store by the digest of its weights: ``models:/<name>@champion`` loads (MLflow 3
    keeps logged models apart from runs) and predicts digits, in Python and through
    ``mlflow models predict``. Inside ``dvc exp run`` the alias is the experiment's
    own and the champion stays."""
    import mlflow

    from mnist_regression.core.models import LinearModel
    from mnist_regression.data.prepare import load_task
    from mnist_regression.study.champion import candidates, choose, choose_per_task
    from mnist_regression.tracking.serving import (
        ALIAS,
        alias_for,
        register_champions,
    )

    results = tmp_path / "results"
    app.launch(
        "-m",
        "model.l2=0,0.01",
        "optimizer.max_epochs=2",
        f"output_dir={results / 'models'}",
    )
    jobs = candidates(results, ["models"])
    assert len(jobs) == 2
    experiment = app.jobs()[0].info.experiment_id
    picks = choose_per_task(jobs)
    (name,) = register_champions(app.client, experiment, picks, [2, 3], ALIAS)
    assert name == "mnist-logistic-2-vs-3"
    champion = app.client.get_model_version_by_alias(name, ALIAS)
    best = choose(jobs).best
    version = app.client.get_model_version(name, champion.version)
    distinct = {job.weights_sha256 for job in jobs}  # the same weights count once
    assert version.tags["selection.candidates"] == str(len(distinct))
    assert version.description.startswith(f"{best.label}: ")
    with np.load(results / best.label / "weights.npz") as saved:
        ours = LinearModel("logistic", saved["weights"], saved["bias"])
    assert app.client.get_run(champion.run_id).data.tags["weights_sha256"] == (
        best.weights_sha256
    )

    monkeypatch.setenv("MLFLOW_TRACKING_URI", app.uri)
    x = load_task(tmp_path / "prepared", "binary")["x_test"]
    digits = np.where(ours.predict(x) == 1, 2, 3)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@{ALIAS}")
    np.testing.assert_array_equal(loaded.predict(x), digits)
    (tmp_path / "input.json").write_text(json.dumps({"inputs": x[:7].tolist()}))
    served = run(
        [str(BIN / "mlflow"), "models", "predict", "-m", f"models:/{name}@{ALIAS}"]
        + ["-i", str(tmp_path / "input.json"), "-t", "json"]
        + ["--env-manager", "local"],
        tmp_path,
        MLFLOW_TRACKING_URI=app.uri,
    )
    predictions = json.loads(served.stdout.strip().splitlines()[-1])["predictions"]
    assert predictions == [int(d) for d in digits[:7]]

    other = [job for job in jobs if job is not best]  # as an experiment's outputs
    candidate = alias_for("pudgy-clog")
    assert candidate == "candidate-pudgy-clog"
    picks = choose_per_task(other)
    register_champions(app.client, experiment, picks, [2, 3], candidate)
    assert app.client.get_model_version_by_alias(name, candidate).version == 2
    assert app.client.get_model_version_by_alias(name, ALIAS).version == 1


def test_each_run_logs_a_model_that_predicts_as_the_project_does(app, tmp_path):
    import mlflow
    import numpy as np

    from mnist_regression.core.models import LinearModel
    from mnist_regression.data.prepare import load_task

    out = tmp_path / "run"
    app.launch("model=softmax", "optimizer.max_epochs=3", f"output_dir={out}")
    (record,) = app.jobs()
    x = load_task(tmp_path / "prepared", "multiclass")["x_test"]
    with np.load(out / "weights.npz") as saved:
        ours = LinearModel("softmax", saved["weights"], saved["bias"]).predict(x)
    mlflow.set_tracking_uri(app.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{record.info.run_id}/model")
    np.testing.assert_array_equal(model.predict(x), ours)
    spec = model.metadata.signature.inputs.to_dict()[0]["tensor-spec"]
    assert list(spec["shape"]) == [-1, x.shape[1]] and spec["dtype"] == "float32"
    # the same through MLflow's command line, as a user would serve it
    (tmp_path / "input.json").write_text(json.dumps({"inputs": x[:7].tolist()}))
    served = run(
        [
            str(BIN / "mlflow"),
            "models",
            "predict",
            "-m",
            f"runs:/{record.info.run_id}/model",
            "-i",
            str(tmp_path / "input.json"),
            "-t",
            "json",
            "--env-manager",
            "local",
        ],
        tmp_path,
        MLFLOW_TRACKING_URI=app.uri,
    )
    assert json.loads(served.stdout.strip().splitlines()[-1])["predictions"] == [
        int(v) for v in ours[:7]
    ]


def test_lr_auto_trains_where_a_fixed_rate_diverges(app, data_cfg, tmp_path):
    """``optimizer.lr=auto`` (the default) is 1 / (L + l2) on a full batch, as the
    40 training images of the test data are at batch 128, L the top eigenvalue of
    the loss's Hessian at w = 0: under the penalty that makes lr=1 diverge, it
    trains."""
    fixed = app.launch(
        "optimizer.lr=1", "model.l2=10", "optimizer.max_epochs=20", check=False
    )
    assert fixed.returncode == 1 and "diverged" in fixed.stderr
    out = tmp_path / "auto"
    app.launch(
        "optimizer.lr=auto",
        "model.l2=10",
        "optimizer.max_epochs=20",
        f"output_dir={out}",
    )
    (record,) = [r for r in app.runs() if r.info.status == "FINISHED"]
    # the rate used is what is logged and saved, so that reports can format it
    rate = record.data.metrics["epoch/learning_rate"]
    assert float(record.data.params["optimizer.lr"]) == rate
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["config"]["optimizer"]["lr"] == rate
    with np.load(Path(data_cfg.prepared_dir) / "binary.npz") as arrays:
        x = arrays["x_train"].astype(np.float64)
    x = np.hstack([x, np.ones((len(x), 1))])
    curvature = np.linalg.eigvalsh(x.T @ x / len(x)).max() / 4  # logistic: 1/4
    assert record.data.metrics["epoch/learning_rate"] == pytest.approx(
        1 / (curvature + 10), rel=1e-4
    )


def test_the_seed_code_options_train_and_name_the_run(app, tmp_path):
    """Raw pixels, no bias, the rising rule on the scaled objective, no restore:
    the run trains with each, keeps its last weights and is named by them."""
    out = tmp_path / "seed-code"
    app.launch(
        "model=softmax",
        "data.scale=1",
        "model.bias=none",
        "optimizer.lr=1e-6",
        "optimizer.batch_size=null",
        "optimizer.stop_when=rising",
        "optimizer.patience=2",
        "optimizer.monitor=scaled_objective",
        "optimizer.restore_best=false",
        "optimizer.average=none",
        "optimizer.max_epochs=30",
        f"output_dir={out}",
    )
    (record,) = app.jobs()
    name = record.info.run_name
    for part in (
        "scale=1",
        "bias=none",
        "stop=rising",
        "restore=False",
        "average=none",
    ):
        assert part in name, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["best_epoch"] == saved["epochs_run"]  # the last weights kept
    with np.load(out / "weights.npz") as weights:
        np.testing.assert_array_equal(weights["bias"], 0)


def test_a_penalty_that_holds_the_weights_at_zero_is_warned_of(app):
    """Legal, so the run ends FINISHED, and the warning says why it learned
    nothing."""
    result = app.launch("optimizer.lr=auto", "model.l2=1e9", "optimizer.max_epochs=2")
    said = result.stdout + result.stderr  # Hydra's log goes to stdout
    assert "WARNING" in said and "model.l2=1e+09 is" in said
    assert "expect accuracy near chance" in said
    (record,) = app.jobs()
    assert record.info.status == "FINISHED"


def test_a_sweep_with_one_wrong_value_starts_no_job(app, tmp_path):
    """Every swept value is checked in the launching process: the sweep stops
    before its first job, with one line naming the value."""
    out = tmp_path / "sweep"
    result = app.launch(
        "-m",
        "model.l2=0,0.1,-1",
        "optimizer.max_epochs=1",
        f"output_dir={out}",
        check=False,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "the sweep's model.l2=-1: config key 'model.l2': must be >= 0" in line
    assert not list(out.rglob("metrics.json"))
    assert not app.runs()
