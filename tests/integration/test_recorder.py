"""One recorder per command, in its main process: a worker never imports MLflow,
a running job's evaluations reach MLflow while it trains, and a command killed
with SIGKILL takes its workers with it, each job ending KILLED in its folder."""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest

from mnist_regression.common.record import read_json, read_rows

from .conftest import LONG, run, wait_for

pytestmark = pytest.mark.integration

WATCH_IMPORTS = """\
import os, sys
from importlib.abc import MetaPathFinder


class Watch(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mlflow":
            with open(os.environ["MLFLOW_IMPORTS_LOG"], "a") as log:
                log.write(f"{os.getpid()}\\n")


sys.meta_path.insert(0, Watch())
"""
JOBLIB = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")


def job_pids(out) -> list[int]:
    return [
        int(read_json(folder / "run.json")["tags"]["pid"])
        for folder in sorted(out.iterdir())
        if (folder / "run.json").is_file()
    ]


def test_no_worker_imports_mlflow(app, tmp_path):
    """Every process that imports mlflow says so (a sitecustomize on the path):
    the sweep's main process does, to record; its joblib workers never."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WATCH_IMPORTS)
    imports = tmp_path / "imports.log"
    out = tmp_path / "jobs"
    command = app.command(
        "-m", *JOBLIB, "model.l2=0,0.1", "optimizer.max_epochs=2", f"output_dir={out}"
    )
    run(
        command,
        tmp_path,
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(site), os.environ.get("PYTHONPATH")])
        ),
        MLFLOW_IMPORTS_LOG=str(imports),
    )
    importing = {int(pid) for pid in imports.read_text().split()}
    main = int(read_json(out / "sweep.json")["tags"]["pid"])
    workers = set(job_pids(out))
    assert len(workers) == 2 and main not in workers  # jobs ran in workers
    assert main in importing  # the recorder
    assert not workers & importing
    assert {r.info.status for r in app.jobs()} == {"FINISHED"}


def test_a_running_jobs_evaluations_reach_mlflow_while_it_trains(app, tmp_path):
    out = tmp_path / "run"
    process = app.start(*LONG, f"output_dir={out}")

    def points_while_training() -> bool:
        runs = app.jobs()
        if not runs or (out / "metrics.json").exists():
            return False
        history = app.client.get_metric_history(runs[0].info.run_id, "epoch/val_loss")
        return len(history) >= 3

    wait_for(points_while_training, "evaluations in MLflow during training", process)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    process.wait()
    (record,) = app.jobs()
    assert record.info.status == "KILLED"
    steps = [
        m.step
        for m in app.client.get_metric_history(record.info.run_id, "epoch/val_loss")
    ]
    assert steps == [int(row["epoch"]) for row in read_rows(out / "history.csv")]


def test_a_sweep_killed_with_sigkill_takes_its_workers_with_it(app, tmp_path):
    """What an out-of-memory killer does to the command: its workers end within
    a second or so, each job writing a metrics.json marked KILLED, and
    `store sync` then ends every run KILLED."""
    out = tmp_path / "jobs"
    process = app.start("-m", *JOBLIB, "seed=0,1", *LONG, f"output_dir={out}")

    def both_training() -> bool:
        folders = [out / "0", out / "1"]
        return all(len(read_rows(f / "history.csv")) >= 2 for f in folders)

    wait_for(both_training, "both jobs to train", process)
    workers = [psutil.Process(pid) for pid in job_pids(out)]
    process.kill()
    process.wait()
    for folder in (out / "0", out / "1"):
        wait_for(lambda f=folder: (f / "metrics.json").is_file(), f"{folder} ended")
        assert json.loads((folder / "metrics.json").read_text())["status"] == "KILLED"
    wait_for(lambda: not any(w.is_running() for w in workers), "the workers to end")
    sync = [app.command()[0], "-m", "mnist_regression.tracking.store"]
    run([*sync, "--uri", app.uri, "sync", str(out)], tmp_path)
    assert {r.info.status for r in app.runs()} == {"KILLED"}
