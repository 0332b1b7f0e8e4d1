"""The keys and copies of finished jobs (``app.reuse``)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from mnist_regression.app import reuse
from mnist_regression.app.run import RunResult, save_results
from mnist_regression.core.models import LinearModel
from mnist_regression.core.training import METRICS, History

CONFIG = {
    "seed": 0,
    "output_dir": "results/models",
    "progress": False,
    "reuse_dir": "multirun/dvc/finished",
    "study": {"l2_grid": "0,1"},
    "tracking": {"enabled": True, "artifacts": True},
    "model": {"name": "logistic", "l2": 0.0},
    "optimizer": {"lr": 0.1},
}


def changed(path: str, value) -> dict:
    config = copy.deepcopy(CONFIG)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


def test_a_job_key_depends_on_what_the_job_trains_and_nothing_else():
    key = reuse.job_key(CONFIG, "d" * 64, threads=1)
    for path, value in [
        ("output_dir", "results/other"),
        ("progress", True),
        ("reuse_dir", "elsewhere"),
        ("study.l2_grid", "0,0.1"),
        ("tracking.enabled", False),
    ]:
        assert reuse.job_key(changed(path, value), "d" * 64, threads=1) == key, path
    for path, value in [("seed", 1), ("model.l2", 0.01), ("optimizer.lr", 0.01)]:
        assert reuse.job_key(changed(path, value), "d" * 64, threads=1) != key, path
    assert reuse.job_key(CONFIG, "e" * 64, threads=1) != key
    assert reuse.job_key(CONFIG, "d" * 64, threads=2) != key


def finished_job(folder):
    history = History(best_epoch=1, stop_reason="no new best")
    for epoch in (0, 1):
        history.append(epoch, {name: 0.5 + epoch for name in METRICS})
    weights = np.ones((4, 1), np.float32)
    model = LinearModel("logistic", weights, np.zeros(1, np.float32))
    final = {"final_val_accuracy": 0.9, "best_epoch": 1, "epochs_run": 1}
    result = RunResult(model, history, final, ["2 vs 3"], None, CONFIG)
    save_results(result, folder, "logistic")


def test_a_kept_job_is_restored_with_the_asking_jobs_config(tmp_path):
    out = tmp_path / "job"
    out.mkdir()
    finished_job(out)
    reuse.keep(tmp_path / "kept", "k", out, "key1")
    kept = reuse.find(tmp_path / "kept", "k")
    assert kept.run_key == "key1"
    asking = changed("output_dir", "results/other")
    reuse.restore(kept, tmp_path / "other", asking)
    metrics = json.loads((tmp_path / "other" / "metrics.json").read_text())
    assert metrics["config"] == asking
    assert metrics["final_val_accuracy"] == 0.9
    for name in ("weights.npz", "history.csv"):
        assert (tmp_path / "other" / name).read_bytes() == (out / name).read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        ("weights.npz", lambda data: b"garbled"),
        ("metrics.json", lambda data: data.replace(b"0.9", b"0.99")),
        ("history.csv", lambda data: data[: len(data) // 2]),
        ("history.csv", lambda data: b""),
    ],
    ids=["weights", "edited metrics", "cut history", "empty history"],
)
def test_a_kept_job_with_any_file_changed_is_not_reused(tmp_path, damage, caplog):
    out = tmp_path / "job"
    out.mkdir()
    finished_job(out)
    reuse.keep(tmp_path / "kept", "k", out, None)
    assert reuse.find(tmp_path / "kept", "k") is not None
    name, change = damage
    path = tmp_path / "kept" / "k" / name
    path.write_bytes(change(path.read_bytes()))
    assert reuse.find(tmp_path / "kept", "k", "logistic") is None
    assert "logistic: the kept copy of this job" in caplog.text
    assert "trains again" in caplog.text
    assert reuse.find(tmp_path / "kept", "missing") is None


def test_folders_swapped_between_two_keys_are_not_reused(tmp_path):
    """Two kept jobs whose folders trade places: neither is taken for the other."""
    for key in ("a", "b"):
        out = tmp_path / key
        out.mkdir()
        finished_job(out)
        reuse.keep(tmp_path / "kept", key, out, None)
    kept = tmp_path / "kept"
    (kept / "a").rename(kept / "swap")
    (kept / "b").rename(kept / "a")
    (kept / "swap").rename(kept / "b")
    assert reuse.find(kept, "a") is None and reuse.find(kept, "b") is None
