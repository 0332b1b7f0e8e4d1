"""Hydra's submitit launchers, with a cluster's refusal told in one line (a Hydra
plugin: Hydra instantiates launchers only from the hydra_plugins package)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import CompactHydraException
from hydra_plugins.hydra_submitit_launcher import submitit_launcher


class SubmissionRefused(CompactHydraException):
    """Hydra prints this exception's message alone, without a stack."""


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """``submitit_slurm`` whose ``sbatch`` errors become one line naming the fix,
    which sees its jobs end on a cluster without job accounting, and names a
    job that ended without a result (cancelled, failed at start) in one line."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        # imported here: Hydra imports every plugin module at each start
        from submitit.core.utils import FailedJobError, UncompletedJobError
        from submitit.slurm import slurm

        if not getattr(slurm.SlurmJob.watcher, "falls_back_to_squeue", False):
            slurm.SlurmJob.watcher = queue_watcher(delay_s=600)  # submitit's delay
        logs = Path(str(self.config.hydra.sweep.dir)) / ".submitit"
        try:
            return super().launch(job_overrides, initial_job_idx)
        except FailedJobError as err:
            # submitit runs sbatch, prints its error and raises this from it
            refused = err.__cause__
            if not isinstance(refused, subprocess.CalledProcessError) or (
                Path(refused.cmd[0]).name != "sbatch"
            ):
                raise SubmissionRefused(job_ended(err, logs)) from None
            raise SubmissionRefused(
                f"error: sbatch refused the sweep's jobs (exit {refused.returncode}; "
                "its reason is printed above): set hydra.launcher.partition, mem_gb, "
                "cpus_per_task and timeout_min to what the cluster offers (sinfo -l)"
            ) from None
        except UncompletedJobError as err:
            raise SubmissionRefused(job_ended(err, logs)) from None
        except FileNotFoundError as err:
            raise SubmissionRefused(
                f"error: {err.filename} not found: hydra/launcher=slurm needs a "
                "machine with SLURM's commands; hydra/launcher=local runs the same "
                "jobs here"
            ) from None


def job_ended(err: Exception, logs: Path) -> str:
    """One line for a job that ended without its result: submitit's first line
    (the job and its state) and where its logs are."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
    first = re.sub(r" with path \S+", "", first)
    return (
        f"error: a job of the sweep ended without a result: {first}; its output "
        f"and error streams are in {logs}/; the jobs that finished are recorded"
    )


def _queue_states(ids: set[str]) -> dict[str, str] | None:
    """SLURM's state of each job (array tasks as <array>_<task>) that the
    controller still knows, from squeue; None if squeue cannot answer."""
    result = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(sorted(ids))],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:
            return {}  # every one of them is gone from the controller: ended
        return None
    states = {}
    for line in result.stdout.splitlines():
        job, _, state = line.partition("|")
        states[job.strip()] = state.strip()
    return states


def queue_watcher(delay_s: float):
    """submitit's watcher of SLURM jobs, with the fallback below (submitit is
    imported here, not when Hydra imports this plugin at each start)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class QueueWatcher(SlurmInfoWatcher):
        """Job states from ``sacct``, or, for the jobs it says nothing of (a
        cluster without job accounting, where sacct fails), from ``squeue``: a
        job the controller no longer lists has ended (ENDED). Without this a
        sweep whose jobs were cancelled or failed at start waits forever."""

        falls_back_to_squeue = True

        def update(self) -> None:
            super().update()
            waiting = self._registered - self._finished
            info = self._info_dict
            # jobs sacct told nothing of, or only squeue did before (sacct failed)
            silent = {
                job
                for job in waiting
                if not info.get(job, {}).get("State") or "squeue" in info[job]
            }
            if not silent:
                return
            states = _queue_states({job.split("_")[0] for job in silent})
            if states is None:
                return
            for job in silent:
                info[job] = {"State": states.get(job, "ENDED"), "squeue": "yes"}
                if self.is_done(job, mode="cache"):
                    self._finished.add(job)

    return QueueWatcher(delay_s=delay_s)
