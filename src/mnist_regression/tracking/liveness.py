"""Which runs are alive: runs carry their host and process id, and
``mark_stale_runs`` ends as KILLED the RUNNING runs of this host whose process is
gone (SIGKILL, power loss)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable


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


def mark_stale_runs(client, experiment_ids: Iterable[str]) -> list[str]:
    """End as KILLED the RUNNING runs of this host whose process no longer exists."""
    host = socket.gethostname()
    stale = []
    for run in client.search_runs(
        list(experiment_ids),
        filter_string=f"attributes.status = 'RUNNING' and tags.host = '{host}'",
        max_results=1000,
    ):
        tags = run.data.tags
        if not tags.get("pid", "").isdigit():
            continue
        if process_alive(int(tags["pid"]), tags.get("pid_started")):
            continue
        client.set_tag(
            run.info.run_id,
            "failure_reason",
            f"process {tags['pid']} on {host} ended without closing the run "
            "(killed, or the machine stopped)",
        )
        client.set_terminated(run.info.run_id, "KILLED")
        stale.append(run.info.run_id)
    return stale
