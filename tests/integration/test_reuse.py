"""Jobs kept in ``reuse_dir``: an interrupted stage resumes, a configuration
another sweep trained is copied, not trained again."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal

import numpy as np
import psutil
import pytest

from mnist_regression.common.record import read_rows

from .conftest import BIN, run, start_dvc_repro, wait_for

pytestmark = pytest.mark.integration

# jobs of a few seconds each, whatever early stopping would say
SLOW = ("optimizer.lr=0.0001", "optimizer.batch_size=null", "optimizer.patience=100000")


def children(app, parent) -> dict[str, object]:
    """The job runs of one sweep's parent run, by job number: each once."""
    found = {}
    for record in app.jobs():
        if record.data.tags.get("mlflow.parentRunId") != parent.info.run_id:
            continue
        job = record.data.tags["sweep_job"]
        assert job not in found, f"job {job} has two runs"
        found[job] = record
    return found


def parents(app) -> list:
    return sorted(
        (r for r in app.runs() if "sweep_grid" in r.data.tags),
        key=lambda r: r.info.start_time,
    )


def test_an_interrupted_stage_trains_only_its_unfinished_jobs_on_the_rerun(
    app, tmp_path
):
    """Ctrl-C of `dvc repro` while the stage's third job trains; `dvc repro`
    again: the two finished jobs are copied back (not retrained), the others
    train. The first command's parent run ends KILLED with its three jobs; the
    second's holds the four jobs once each, two of them copies naming the runs
    that trained them."""
    project = tmp_path / "project"
    command = app.command(
        "-m", "seed=0,1,2,3", "optimizer.max_epochs=5000", *SLOW, "output_dir=out"
    )
    command.append(f"reuse_dir={tmp_path / 'reuse'}")
    dvc = start_dvc_repro(project, {"cmd": shlex.join(command), "outs": ["out"]})
    jobs = [project / "out" / str(job) for job in range(4)]

    def third_job_training() -> bool:  # read from the folders: MLflow follows
        ended = [(job / "metrics.json").is_file() for job in jobs]
        third = read_rows(jobs[2] / "history.csv")
        return ended == [True, True, False, False] and len(third) >= 2

    wait_for(third_job_training, "two jobs finished and the third training", dvc)
    os.killpg(dvc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    dvc.wait()
    wait_for(
        lambda: all(r.info.status != "RUNNING" for r in app.runs()),
        "the stage to close its runs",
    )
    (parent,) = parents(app)
    assert parent.info.status == "KILLED"
    before = children(app, parent)
    finished = {job: r for job, r in before.items() if r.info.status == "FINISHED"}
    assert len(finished) == 2 and len(before) == 3

    run([str(BIN / "dvc"), "repro"], project)

    first, second = parents(app)
    assert first.info.run_id == parent.info.run_id
    assert first.info.status == "KILLED" and len(children(app, first)) == 3
    assert second.info.status == "FINISHED"
    after = children(app, second)
    assert sorted(after) == ["0", "1", "2", "3"]
    assert {r.info.status for r in after.values()} == {"FINISHED"}
    for job, record in finished.items():  # copies, not trained again
        assert after[job].data.tags["reused_from"] == record.info.run_id
        for name, value in record.data.metrics.items():
            if name.startswith("final_"):
                assert after[job].data.metrics[name] == value
    for job in ("0", "1", "2", "3"):
        metrics = json.loads((project / "out" / job / "metrics.json").read_text())
        assert metrics["status"] == "FINISHED"
        assert metrics["config"]["output_dir"] == "out"
        assert metrics["config"]["seed"] == int(job)
    logs = {
        job: (tmp_path / "multirun" / job / "train.log").read_text()
        for job in ("0", "1", "2", "3")
    }
    reused = {job for job, text in logs.items() if "outputs reused" in text}
    assert reused == set(finished)
    # a second rerun with another setting is a sweep of its own
    command[command.index("optimizer.patience=100000")] = "optimizer.patience=50"
    (project / "dvc.yaml").write_text(
        json.dumps({"stages": {"train": {"cmd": shlex.join(command), "outs": ["out"]}}})
    )
    run([str(BIN / "dvc"), "repro"], project)
    third = parents(app)[-1]
    assert third.info.run_id not in (first.info.run_id, second.info.run_id)
    assert {
        r.data.params["optimizer.patience"] for r in children(app, third).values()
    } == {"50"}


def test_a_job_another_sweep_trained_is_copied_with_a_run_of_its_own(app, tmp_path):
    reuse = f"reuse_dir={tmp_path / 'reuse'}"
    app.launch("-m", "seed=0,1", "optimizer.max_epochs=3", "output_dir=a", reuse)
    first = {r.data.params["seed"]: r for r in app.jobs()}
    app.launch("-m", "seed=1,2", "optimizer.max_epochs=3", "output_dir=b", reuse)
    sweep_a, sweep_b = sorted(parents(app), key=lambda r: r.info.start_time)
    in_b = {
        r.data.params["seed"]: r
        for r in app.jobs()
        if r.data.tags["mlflow.parentRunId"] == sweep_b.info.run_id
    }
    assert sorted(in_b) == ["1", "2"]
    copy, trained = in_b["1"], in_b["2"]
    assert copy.data.tags["reused_from"] == first["1"].info.run_id
    assert "reused_from" not in trained.data.tags
    assert copy.info.status == "FINISHED"
    for key, value in first["1"].data.metrics.items():
        if key.startswith("final_") or key.startswith("epoch/"):
            assert copy.data.metrics[key] == value, key
    history = app.client.get_metric_history(copy.info.run_id, "epoch/val_loss")
    original = app.client.get_metric_history(first["1"].info.run_id, "epoch/val_loss")
    assert [m.value for m in history] == [m.value for m in original]
    assert copy.data.tags["weights_sha256"] == first["1"].data.tags["weights_sha256"]
    with (
        np.load(tmp_path / "a" / "1" / "weights.npz") as a,
        np.load(tmp_path / "b" / "0" / "weights.npz") as b,
    ):
        assert np.array_equal(a["weights"], b["weights"])
    metrics = json.loads((tmp_path / "b" / "0" / "metrics.json").read_text())
    assert metrics["config"]["output_dir"] == "b"
    assert sweep_a.info.run_id != sweep_b.info.run_id


def the_sweeps_main_process(dvc) -> psutil.Process:
    """The Hydra main process of the stage `dvc` runs: its recorder's home."""
    found = [
        p
        for p in psutil.Process(dvc.pid).children(recursive=True)
        if "mnist_regression.train" in " ".join(p.cmdline())
    ]
    return min(found, key=lambda p: p.create_time())


def test_a_stage_killed_with_its_recorder_is_rerun_with_every_run_ended(app, tmp_path):
    """SIGKILL to the stage's main process, its recorder with it, while the
    second job trains; `dvc repro` again: the killed command's runs end with
    their true status (the finished job FINISHED, completed from its kept copy
    if the recorder died before recording its end; the one training KILLED;
    their parent KILLED), the new sweep holds every job once with all its
    points, the finished one copied.
    Then the README's way to train everything again: delete the kept jobs and
    `dvc repro -f -s train`: a third sweep of the same jobs, each once, none
    copied."""
    project, reuse = tmp_path / "project", tmp_path / "reuse"
    command = app.command(
        "-m", "seed=0,1,2", "optimizer.max_epochs=5000", *SLOW, "output_dir=out"
    )
    command.append(f"reuse_dir={reuse}")
    dvc = start_dvc_repro(project, {"cmd": shlex.join(command), "outs": ["out"]})
    jobs = [project / "out" / str(job) for job in range(3)]

    def second_job_training() -> bool:  # read from the folders alone: quick
        ended = [(job / "metrics.json").is_file() for job in jobs]
        training = len(read_rows(jobs[1] / "history.csv")) >= 2
        return ended == [True, False, False] and training

    wait_for(second_job_training, "the first job finished, the second training", dvc)
    the_sweeps_main_process(dvc).kill()
    dvc.wait()
    (killed,) = parents(app)
    assert killed.info.status == "RUNNING"  # nobody left to end it

    run([str(BIN / "dvc"), "repro"], project)

    assert {r.info.status for r in app.runs()} <= {"FINISHED", "KILLED"}
    first, second = parents(app)
    assert first.info.run_id == killed.info.run_id
    assert first.info.status == "KILLED"
    before = children(app, first)
    assert before["0"].info.status == "FINISHED"
    if "1" in before:  # indexed before the kill (the recorder looks every second)
        assert before["1"].info.status == "KILLED"
        reason = before["1"].data.tags["failure_reason"]
        assert "ended without closing its run" in reason
    after = children(app, second)
    assert sorted(after) == ["0", "1", "2"]
    assert {r.info.status for r in after.values()} == {"FINISHED"}
    assert after["0"].data.tags["reused_from"] == before["0"].info.run_id
    for job, record in after.items():
        points = app.client.get_metric_history(record.info.run_id, "epoch/val_loss")
        rows = read_rows(project / "out" / job / "history.csv")
        assert [p.step for p in points] == [int(row["epoch"]) for row in rows]

    shutil.rmtree(reuse)
    run([str(BIN / "dvc"), "repro", "-f", "-s", "train"], project)
    third = parents(app)[-1]
    assert third.info.run_id not in (first.info.run_id, second.info.run_id)
    again = children(app, third)
    assert sorted(again) == ["0", "1", "2"]
    assert not any("reused_from" in r.data.tags for r in again.values())
    assert len(app.jobs()) == len(before) + 3 + 3
