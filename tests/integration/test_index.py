"""The job folder as the record of its run, MLflow as its index: ``store sync``
rebuilds a sweep's runs from its folders alone, completes a half-indexed run,
and adds nothing the second time."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from mnist_regression.common.record import read_rows

from .conftest import run, runs_of

pytestmark = pytest.mark.integration


def sync(tmp_path, uri: str, *paths) -> str:
    command = [sys.executable, "-m", "mnist_regression.tracking.store", "--uri", uri]
    return run([*command, "sync", *map(str, paths)], tmp_path).stdout


def by_name(runs) -> dict:
    return {r.info.run_name: r for r in runs}


def test_sync_rebuilds_a_sweep_from_its_folders_in_a_new_store(app, tmp_path):
    out = tmp_path / "jobs"
    app.launch("-m", "model.l2=0,0.1", "optimizer.max_epochs=3", f"output_dir={out}")
    live = by_name(app.runs())
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    keys = [json.loads((f / "run.json").read_text())["run_key"] for f in folders]
    assert len(set(keys)) == 2
    # the live store found again by key: nothing to add
    assert sync(tmp_path, app.uri, out).startswith(
        "0 runs created, 0 completed, 2 already indexed"
    )

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert sync(tmp_path, fresh, out).startswith("2 runs created")
    client = MlflowClient(fresh)
    rebuilt = by_name(runs_of(client))
    assert set(rebuilt) == set(live)  # the parent and both jobs, by name
    parent = next(r for r in rebuilt.values() if "sweep_grid" in r.data.tags)
    for folder in folders:
        record = json.loads((folder / "run.json").read_text())
        run_ = rebuilt[record["run_name"]]
        original = live[record["run_name"]]
        assert run_.info.status == "FINISHED"
        assert run_.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run_.data.params == original.data.params
        for name, value in original.data.metrics.items():
            if name.startswith("final_"):
                assert run_.data.metrics[name] == pytest.approx(value)
        history = client.get_metric_history(run_.info.run_id, "epoch/val_loss")
        rows = read_rows(folder / "history.csv")
        assert [(m.step, m.value) for m in history] == [
            (int(r["epoch"]), r["val_loss"]) for r in rows
        ]
        artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
        assert {"config.yaml", "weights.npz", "weights_grid.png"} <= artifacts
    # a second sync adds nothing
    assert sync(tmp_path, fresh, out).startswith("0 runs created, 0 completed")
    assert len(runs_of(client)) == 3


def test_a_half_indexed_run_is_completed_without_duplicates(app, tmp_path):
    """A job's folder indexed while it had two evaluations (as a recorder killed
    mid-run leaves it), then again once finished: every epoch once, FINISHED."""
    out = tmp_path / "job"
    app.launch("optimizer.max_epochs=4", f"output_dir={out}", "tracking.enabled=false")
    history = (out / "history.csv").read_text().splitlines(keepends=True)
    metrics = (out / "metrics.json").read_bytes()
    (out / "metrics.json").unlink()
    (out / "history.csv").write_text("".join(history[:3]) + history[3][:10])
    store = f"sqlite:///{tmp_path / 'index.db'}"
    assert sync(tmp_path, store, out).startswith("1 runs created")
    client = MlflowClient(store)
    (run_,) = runs_of(client)
    assert run_.info.status == "KILLED"  # its process is gone, metrics.json missing
    assert "ended without writing metrics.json" in run_.data.tags["failure_reason"]
    steps = client.get_metric_history(run_.info.run_id, "epoch/val_loss")
    first_two = [int(row["epoch"]) for row in csv.DictReader(history[:3])]
    assert [m.step for m in steps] == first_two  # the cut third row is left out

    (out / "history.csv").write_text("".join(history))
    (out / "metrics.json").write_bytes(metrics)
    assert sync(tmp_path, store, out).startswith("0 runs created, 1 completed")
    (run_,) = runs_of(client)
    assert run_.info.status == "FINISHED"
    assert "failure_reason" not in run_.data.tags
    steps = client.get_metric_history(run_.info.run_id, "epoch/val_loss")
    expected = [int(row["epoch"]) for row in csv.DictReader(history)]
    assert [m.step for m in steps] == expected
    assert (
        run_.data.metrics["final_val_accuracy"]
        == json.loads(metrics)["final_val_accuracy"]
    )


def test_sync_names_a_path_without_job_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    command = [sys.executable, "-m", "mnist_regression.tracking.store"]
    store = f"sqlite:///{tmp_path / 'x.db'}"
    found = subprocess.run(
        [*command, "--uri", store, "sync", str(empty)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 1
    assert "Traceback" not in found.stderr
    assert f"no job folder (one with run.json) at or under {empty}" in found.stderr
    assert not (tmp_path / "x.db").exists()  # nothing made before the check
