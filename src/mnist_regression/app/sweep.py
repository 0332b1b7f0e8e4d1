"""What a multirun does in its main process, before and after its jobs.

``SweepGuard`` (a Hydra callback): the tracking target is checked once before any
job starts, the numbered job folders of ``output_dir`` from an earlier sweep are
cleared, the sweep's MLflow parent run (``SweepRun``) is opened, and the end of
the sweep names its failed jobs and closes the parent with its best job.
SIGTERM is passed on to the workers (``forward_to_workers``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..common import cli
from ..common.errors import UserError
from ..tracking import provenance
from ..tracking.liveness import mark_stale_runs, process_tags
from ..tracking.session import open_session
from ..tracking.target import describe_failure
from .results import job_failure, job_folders, read_stage
from .run import PARENT_RUN_VARIABLE

WAIT_FOR_WORKERS = 60.0  # seconds a stopped sweep waits for its jobs to close runs


class SweepGuard(Callback):
    """What a multirun does in its main process, before and after its jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("output_dir"):  # job folders, and Hydra's logs beside them
            clear_job_folders(Path(config.output_dir))
            clear_job_folders(Path(config.hydra.sweep.dir))
        try:
            if config.tracking.enabled:
                _sweep.open(config)
        except UserError as err:
            cli.print_error(err)
            sys.exit(1)  # SystemExit passes Hydra's callback guard; stops the sweep

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        base = Path(config.output_dir or config.hydra.sweep.dir)
        summary = sweep_summary(base)
        if summary:
            print(summary, file=sys.stderr, flush=True)
        _sweep.close("FINISHED", base if config.tracking.artifacts else None)


class SweepRun:
    """The MLflow parent run of a multirun: its grid, then its best job.

    Created once in the main process before any job starts (jobs started in
    parallel would race to create it); jobs find its id in the environment.
    """

    def __init__(self) -> None:
        self.client = self.run_id = None

    def open(self, config: DictConfig) -> None:
        session = open_session(config.tracking.uri)
        target = session.target
        grid = sweep_grid(config)
        stage = os.environ.get("DVC_STAGE")
        name = f"{stage or 'sweep'}: " + " ".join(f"{k}={v}" for k, v in grid.items())
        try:
            self.client = session.client
            experiment = session.experiment_id(config.tracking.experiment)
            run = self.client.create_run(
                experiment,
                run_name=name,
                tags={
                    "sweep_grid": json.dumps(grid),
                    "sweep": str(config.hydra.sweep.dir),
                    **provenance.source_tags(),
                    **process_tags(),
                },
            )
        except Exception as err:
            cli.check_stop()  # an interrupt that a library turned into another error
            raise target.fail(
                f"cannot start the sweep's run ({describe_failure(err)})",
                "check the store, or set tracking.enabled=false",
            ) from None
        self.run_id = run.info.run_id
        os.environ[PARENT_RUN_VARIABLE] = self.run_id
        for key, values in grid.items():
            self.client.log_param(self.run_id, key, values)

    def close(self, status: str, jobs: Path | None = None) -> None:
        """Record the best job (lowest final validation loss), the curves of the
        jobs written under ``jobs`` (if given), and end the run."""
        if self.run_id is None:
            return
        run_id, self.run_id = self.run_id, None
        os.environ.pop(PARENT_RUN_VARIABLE, None)
        try:
            parent = self.client.get_run(run_id)
            if jobs is not None:
                self.log_curves(run_id, parent.info.run_name, jobs)
            mark_stale_runs(self.client, [parent.info.experiment_id])
            children = self.client.search_runs(
                [parent.info.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{run_id}' "
                "and attributes.status = 'FINISHED'",
                order_by=["metrics.final_val_loss ASC"],
                max_results=1000,
            )
            if children:
                best = children[0]
                self.client.set_tag(run_id, "best_run_id", best.info.run_id)
                self.client.set_tag(run_id, "best_run_name", best.info.run_name)
                for key in (
                    "final_val_loss",
                    "final_val_accuracy",
                    "final_test_accuracy",
                ):
                    if key in best.data.metrics:
                        self.client.log_metric(
                            run_id, f"best_{key}", best.data.metrics[key]
                        )
            self.client.log_metric(run_id, "jobs_finished", len(children))
            self.client.set_terminated(run_id, status)
        except (
            Exception
        ) as err:  # the jobs' runs are recorded; only the summary is lost
            print(
                f"warning: could not close the sweep's MLflow run {run_id}: "
                f"{describe_failure(err)}",
                file=sys.stderr,
            )

    def log_curves(self, run_id: str, name: str, jobs: Path) -> None:
        """``curves.png``: the finished jobs' validation curves, side by side."""
        from ..figures.drawing import save, sweep_figure

        if not job_folders(jobs):
            return
        finished, _ = read_stage(jobs)
        if not finished:
            return
        labelled = [(job.label, job.history) for job in finished]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "curves.png"
            save(sweep_figure(labelled, name), path)
            self.client.log_artifact(run_id, str(path))


_sweep = SweepRun()


def sweep_grid(config: DictConfig) -> dict[str, str]:
    """The swept settings of a multirun: from the command line and the sweeper."""
    grid = {}
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    for key, values in params.items():
        grid[str(key)] = str(values)
    for override in config.hydra.overrides.task:
        key, _, value = str(override).partition("=")
        if "," in value and not value.startswith(("[", "{", "'", '"')):
            grid[key.lstrip("+~")] = value
    return grid


def clear_job_folders(directory: Path) -> None:
    """Remove the numbered job folders an earlier sweep left in ``directory``."""
    if directory.is_dir():
        for child in directory.iterdir():
            if child.is_dir() and child.name.isdigit():
                shutil.rmtree(child)


def sweep_summary(base: Path) -> str:
    """One line per job that did not finish, or '' when all did."""
    folders = [p for p in job_folders(base) if p != base]
    failed = [(p.name, job_failure(p)) for p in folders]
    lines = [f"  job {num} ({job.label}): {job.reason}" for num, job in failed if job]
    if not lines:
        return ""
    return f"sweep: {len(lines)} of {len(folders)} jobs failed:\n" + "\n".join(lines)


def _workers() -> list:
    import psutil

    children = psutil.Process().children(recursive=True)
    return [p for p in children if _is_worker(p)]


def _is_worker(process) -> bool:
    try:
        return "resource_tracker" not in " ".join(process.cmdline())
    except Exception:
        return False


def forward_to_workers(signum: int) -> None:
    """In a sweep's main process: pass SIGTERM on (a terminal's Ctrl-C reaches the
    workers by itself), then wait for the workers to close their runs."""
    import psutil

    workers = _workers()
    if signum == signal.SIGTERM:
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.send_signal(signum)
    psutil.wait_procs(workers, timeout=WAIT_FOR_WORKERS)


def close_sweep() -> None:
    """End the parent run of a sweep that did not reach its end."""
    _sweep.close("KILLED" if cli.stop_requested() else "FAILED")
