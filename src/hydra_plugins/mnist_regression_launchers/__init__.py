"""Hydra's submitit launchers, with a cluster's refusal told in one line (a Hydra
plugin: Hydra instantiates launchers only from the hydra_plugins package)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import CompactHydraException
from hydra_plugins.hydra_submitit_launcher import submitit_launcher


class SubmissionRefused(CompactHydraException):
    """Hydra prints this exception's message alone, without a stack."""


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """``submitit_slurm`` whose ``sbatch`` errors become one line naming the fix."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        # imported here: Hydra imports every plugin module at each start
        from submitit.core.utils import FailedJobError

        try:
            return super().launch(job_overrides, initial_job_idx)
        except FailedJobError as err:
            # submitit runs sbatch, prints its error and raises this from it
            refused = err.__cause__
            if not isinstance(refused, subprocess.CalledProcessError) or (
                Path(refused.cmd[0]).name != "sbatch"
            ):
                raise
            raise SubmissionRefused(
                f"error: sbatch refused the sweep's jobs (exit {refused.returncode}; "
                "its reason is printed above): set hydra.launcher.partition, mem_gb, "
                "cpus_per_task and timeout_min to what the cluster offers (sinfo -l)"
            ) from None
        except FileNotFoundError as err:
            raise SubmissionRefused(
                f"error: {err.filename} not found: hydra/launcher=slurm needs a "
                "machine with SLURM's commands; hydra/launcher=local runs the same "
                "jobs here"
            ) from None
