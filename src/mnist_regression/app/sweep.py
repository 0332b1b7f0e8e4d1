"""What a multirun does in its main process, before and after its jobs.

``SweepGuard`` (a Hydra callback): every value the sweep will set is checked
in the launching process (a wrong one stops the sweep before any worker starts),
the numbered job folders of ``output_dir`` from an earlier sweep are cleared,
the sweep's recorder (``tracking.recorder``) opens the store, failing before
any job starts if it cannot, and records the jobs' folders as they train; the
end of the sweep names its failed jobs and closes the parent with its best job.
SIGTERM is passed on to the workers (``forward_to_workers``).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..common import cli
from ..common.config import train_config
from ..common.errors import ConfigError, UserError
from .results import job_failure, job_folders, read_stage

WAIT_FOR_WORKERS = 60.0  # seconds a stopped sweep waits for its jobs to close runs


class SweepGuard(Callback):
    """What a multirun does in its main process, before and after its jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_jobs(config)
        except UserError as err:
            cli.print_error(err)
            sys.exit(1)  # before any job folder is cleared or any worker started
        if config.get("output_dir"):  # job folders, and Hydra's logs beside them
            clear_job_folders(Path(config.output_dir))
            clear_job_folders(Path(config.hydra.sweep.dir))
        if not config.tracking.enabled:
            return
        from ..tracking.recorder import start_sweep

        jobs_dir = Path(config.output_dir or config.hydra.sweep.dir)
        folder = str(config.hydra.sweep.dir)
        try:
            _sweep.recorder = start_sweep(
                config.tracking, jobs_dir, sweep_grid(config), folder
            )
        except UserError as err:
            cli.print_error(err)
            sys.exit(1)  # SystemExit passes Hydra's callback guard; stops the sweep

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        base = Path(config.output_dir or config.hydra.sweep.dir)
        summary = sweep_summary(base)
        if summary:
            print(summary, file=sys.stderr, flush=True)
        curves = finished_curves(base) if config.tracking.artifacts else None
        _sweep.finish("FINISHED", curves)


class _Sweep:
    """The running sweep's recorder, ended once: at the sweep's end, or by
    ``close_sweep`` when it is interrupted."""

    recorder = None

    def finish(self, status: str, curves: list | None = None) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.finish(status, curves)


_sweep = _Sweep()


def finished_curves(base: Path) -> list:
    """(label, History) of each finished job in the job folders of ``base``."""
    if not job_folders(base):
        return []
    finished, _ = read_stage(base)
    return [(job.label, job.history) for job in finished]


def check_jobs(config: DictConfig) -> None:
    """Type and range checks of the configuration each swept value gives, as
    its job would run them; ConfigError naming the value if one fails."""
    base = OmegaConf.to_container(config, resolve=False)
    base.pop("hydra", None)
    for key, values in sweep_grid(config).items():
        if "(" in values:  # a sweeper's range() or choice(): its jobs check
            continue
        if is_group(key) or isinstance(OmegaConf.select(config, key), DictConfig):
            continue  # a config group (model=logistic,softmax), not a value
        for value in values.split(","):
            job = OmegaConf.create(base)
            OmegaConf.update(job, key, yaml.safe_load(value), force_add=True)
            try:
                train_config(job)
            except ConfigError as err:
                raise ConfigError(f"the sweep's {key}={value}: {err}") from None


def is_group(key: str) -> bool:
    """Whether ``key`` names a config group of the app's search path."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance()
    if not hydra.is_initialized():
        return False
    return bool(hydra.config_loader().get_group_options(key))


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
    """Record what a sweep that did not reach its end left, and end its parent."""
    _sweep.finish("KILLED" if cli.stop_requested() else "FAILED")
