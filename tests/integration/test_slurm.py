"""A sweep on a real SLURM cluster through the project's launcher preset.

The cluster is one node on 127.0.0.1: Debian's munge, slurmctld and slurmd, with
their configuration, keys, state and logs in a temporary directory (SLURM_CONF),
started and stopped by PID. `make test` installs the packages.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from .conftest import HANG, free_port, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.services,
    pytest.mark.xdist_group("slurm"),  # one cluster on the machine: one at a time
]

DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo")


def slurm_conf(home: Path, host: str) -> str:
    ctld, slurmd = free_port(), free_port()
    return f"""\
ClusterName=local
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={home}/munge.sock
StateSaveLocation={home}/state
SlurmdSpoolDir={home}/spool
SlurmctldPidFile={home}/slurmctld.pid
SlurmdPidFile={home}/slurmd.pid
SlurmctldLogFile={home}/slurmctld.log
SlurmdLogFile={home}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def stop(pid_file: Path) -> None:
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


@pytest.fixture
def slurm(monkeypatch):
    """A one-node SLURM cluster; SLURM_CONF points at it for the test."""
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing or os.geteuid() != 0:
        pytest.fail(f"SLURM needs root and {missing}: `make test` installs slurm-wlm")
    home = Path(tempfile.mkdtemp(prefix="mnist-regression-slurm-"))
    for folder in ("state", "spool"):
        (home / folder).mkdir()
    key = home / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (home / "slurm.conf").write_text(slurm_conf(home, socket.gethostname()))
    monkeypatch.setenv("SLURM_CONF", str(home / "slurm.conf"))
    try:
        subprocess.run(
            ["munged", "--force", f"--socket={home}/munge.sock", f"--key-file={key}"]
            + [f"--pid-file={home}/munged.pid", f"--log-file={home}/munged.log"]
            + [f"--seed-file={home}/munge.seed"],
            check=True,
        )
        subprocess.run(["slurmctld"], check=True)
        subprocess.run(["slurmd"], check=True)

        def idle() -> bool:
            nodes = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True
            )
            return nodes.stdout.strip() == "idle"

        wait_for(idle, "the SLURM node to be idle")
        yield home
    finally:
        # no job outlives its cluster (a failed test may leave some training)
        subprocess.run(["scancel", "--quiet", "--user=root"], check=False)
        for daemon in ("slurmd", "slurmctld", "munged"):
            stop(home / f"{daemon}.pid")
        shutil.rmtree(home, ignore_errors=True)


def test_a_lambda_sweep_runs_as_slurm_jobs(app, slurm):
    result = app.launch(
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=debug",
        "hydra.launcher.timeout_min=5",
        "model.l2=0,0.01,0.1",
    )
    assert "sweep: 0 of 3 jobs failed" not in result.stderr  # said only on failure
    jobs = app.jobs()
    assert sorted(r.data.params["model.l2"] for r in jobs) == ["0.0", "0.01", "0.1"]
    assert {r.info.status for r in jobs} == {"FINISHED"}
    for run in jobs:
        assert 0.0 <= run.data.metrics["final_val_accuracy"] <= 1.0
        assert run.data.tags["slurm.job_id"]  # run inside a SLURM job
    assert len({r.data.tags["slurm.job_id"] for r in jobs}) == 3
    assert len({r.data.tags["slurm.array_job_id"] for r in jobs}) == 1  # one array
    (parent,) = [r for r in app.runs() if "sweep_grid" in r.data.tags]
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}


def test_a_request_the_cluster_cannot_meet_is_one_line(app, slurm):
    result = app.launch(
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=debug",
        "hydra.launcher.mem_gb=100000",  # more than the node has
        "model.l2=0,0.01",
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "sbatch: error" in result.stderr  # SLURM's own reason
    assert "error: sbatch refused the sweep's jobs" in result.stderr
    assert "mem_gb" in result.stderr


def test_a_cancelled_sweep_returns_in_one_line_keeping_each_jobs_history(
    app, slurm, tmp_path
):
    """`scancel` of a sweep's jobs on a cluster without job accounting (sacct
    fails): the sweep notices they ended and says so in one line, instead of
    waiting for ever; each job ends its run KILLED and writes its history."""
    out = tmp_path / "out"
    process = app.start(
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=debug",
        "hydra.launcher.timeout_min=5",
        "model.l2=0,0.01",
        "optimizer.max_epochs=1000000000",  # until cancelled
        "optimizer.patience=1000000000",
        "optimizer.lr=0.0001",
        "optimizer.batch_size=null",
        "optimizer.eval_every=200",
        "tracking.artifacts=false",
        f"output_dir={out}",
        stderr=subprocess.PIPE,
    )

    def training() -> list:
        runs = [r for r in app.jobs() if r.info.status == "RUNNING"]
        return len(runs) == 2 and all(
            len(app.client.get_metric_history(r.info.run_id, "epoch/val_loss")) >= 2
            for r in runs
        )

    wait_for(training, "both jobs to train", process)
    array = app.jobs()[0].data.tags["slurm.array_job_id"]
    subprocess.run(["scancel", array], check=True)
    process.wait(timeout=HANG)
    err = process.stderr.read()
    assert process.returncode == 1, err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "a job of the sweep ended without a result" in line
    assert ".submitit" in line
    jobs = app.jobs()
    assert len(jobs) == 2 and {r.info.status for r in jobs} == {"KILLED"}
    for folder in ("0", "1"):
        metrics = json.loads((out / folder / "metrics.json").read_text())
        assert metrics["status"] == "KILLED"
        assert len((out / folder / "history.csv").read_text().splitlines()) >= 3
