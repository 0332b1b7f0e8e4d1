"""Which runs are alive: a job's ``run.json`` carries its host and process id,
and the index ends as KILLED the run of a folder without ``metrics.json`` whose
process is gone from this host (SIGKILL, power loss)."""

from __future__ import annotations

import os
import socket


def process_tags() -> dict[str, str]:
    import psutil

    me = psutil.Process()
    tags = {
        "host": socket.gethostname(),
        "pid": str(me.pid),
        "pid_started": f"{me.create_time():.2f}",
    }
    # a SLURM job (hydra/launcher=slurm) names its job and array task
    for variable in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        if os.environ.get(variable):
            tags[f"slurm.{variable.removeprefix('SLURM_').lower()}"] = os.environ[
                variable
            ]
    return tags


def process_alive(pid: int, started: str | None) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return started is None or f"{process.create_time():.2f}" == started
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def gone_from_here(tags) -> bool:
    """Whether the process that ``tags`` (``process_tags``) name ran on this host
    and is gone; False for another host's, whose fate is unknown here."""
    pid = str(tags.get("pid", ""))
    if tags.get("host") != socket.gethostname() or not pid.isdigit():
        return False
    return not process_alive(int(pid), tags.get("pid_started"))
