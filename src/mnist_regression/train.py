"""The Hydra application: ``python -m mnist_regression.train [overrides]``.

Examples::

    python -m mnist_regression.train model=softmax optimizer.lr=0.1
    python -m mnist_regression.train -m model=logistic model.l2=0,0.001,0.01,0.1,1
    python -m mnist_regression.train sweep=l2 model=softmax
    python -m mnist_regression.train experiment=seed
    python -m mnist_regression.train --config-dir . --config-name params  # DVC

A multirun is guarded by ``SweepGuard``: the tracking target is checked once before
any job starts, the numbered job folders of ``output_dir`` from an earlier sweep are
cleared, SIGTERM reaches the workers, and the end of the sweep names its failed
jobs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import cli, provenance, store
from .config import train_config
from .errors import ConfigError, UserError
from .provenance import CONF
from .results import job_failure, job_folders
from .run import PARENT_RUN_VARIABLE, run_training
from .training import DivergenceError

# ${pid:} in hydra.run.dir keeps runs started in the same second apart.
OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
log = logging.getLogger("mnist_regression")
WAIT_FOR_WORKERS = 60.0  # seconds a stopped sweep waits for its jobs to close runs


def output_dir(cfg: DictConfig, hydra_cfg, multirun: bool) -> Path:
    """``output_dir`` (one numbered folder per multirun job), else Hydra's own."""
    if cfg.output_dir is None:
        return Path(hydra_cfg.runtime.output_dir)
    directory = Path(cfg.output_dir)
    return directory / str(hydra_cfg.job.num) if multirun else directory


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float | None:
    started = time.monotonic()
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if os.getpid() != _MAIN_PID:  # a joblib worker: signals end its run, then it
        cli.install_signal_handlers()
        cli.skip_final_collection()
    overrides = list(hydra_cfg.overrides.task)
    tags = {"hydra_overrides": " ".join(overrides)}
    if multirun:
        tags |= {"sweep": hydra_cfg.sweep.dir, "sweep_job": str(hydra_cfg.job.num)}
    try:
        cfg = train_config(cfg)
        if cfg.progress is None and multirun:
            cfg.progress = False
        run_name = provenance.run_name(cfg)
        out = output_dir(cfg, hydra_cfg, multirun)
        result = run_training(cfg, out, run_name, run_name, tags)
    except DivergenceError as err:
        cli.print_error(err)
        if multirun:
            return None  # recorded as a FAILED run; the rest of the sweep goes on
        sys.exit(1)
    except UserError as err:
        cli.print_error(err)
        sys.exit(1)
    except (KeyboardInterrupt, cli.Terminated) as err:
        if os.getpid() == _MAIN_PID:
            raise
        sys.stderr.flush()
        os._exit(cli.exit_code(err))  # a worker: end it, so the sweep stops
    final = result.final
    # Hydra's job logging: on the console and in the job's train.log
    log.info(
        "%s: best epoch %d of %d, val accuracy %.4f, test accuracy %.4f%s (%.1f s)",
        run_name,
        final["best_epoch"],
        final["epochs_run"],
        final["final_val_accuracy"],
        final["final_test_accuracy"],
        f", MLflow run {result.run_id}" if result.run_id else "",
        time.monotonic() - started,
    )
    return final["final_val_loss"]


_MAIN_PID = os.getpid()


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
        from mlflow.tracking import MlflowClient

        from .store import prepare_target, resolve_target
        from .tracking import experiment_id

        target = resolve_target(config.tracking.uri)
        prepare_target(target)
        grid = sweep_grid(config)
        stage = os.environ.get("DVC_STAGE")
        name = f"{stage or 'sweep'}: " + " ".join(f"{k}={v}" for k, v in grid.items())
        try:
            self.client = MlflowClient(target.uri)
            experiment = experiment_id(self.client, target, config.tracking.experiment)
            run = self.client.create_run(
                experiment,
                run_name=name,
                tags={
                    "sweep_grid": json.dumps(grid),
                    "sweep": str(config.hydra.sweep.dir),
                    **provenance.source_tags(),
                    **store.process_tags(),
                },
            )
        except Exception as err:
            cli.check_stop()  # an interrupt that a library turned into another error
            raise target.fail(
                f"cannot start the sweep's run ({store.describe_failure(err)})",
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
            store.mark_stale_runs(self.client, [parent.info.experiment_id])
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
                f"{store.describe_failure(err)}",
                file=sys.stderr,
            )

    def log_curves(self, run_id: str, name: str, jobs: Path) -> None:
        """``curves.png``: the finished jobs' validation curves, side by side."""
        import tempfile

        from .drawing import save
        from .results import read_stage
        from .run_figures import sweep_figure

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


SWEEP_GUARD = "++hydra.callbacks.sweep_guard._target_=mnist_regression.train.SweepGuard"


def with_override(args: list[str], override: str) -> list[str]:
    """``args`` with ``override`` among its overrides: Hydra's parser takes them as
    one run of positional arguments, so flags such as ``--cfg job`` may follow."""
    for i, arg in enumerate(args):
        if "=" in arg and not arg.startswith("-"):
            return [*args[:i], override, *args[i:]]
    return [*args, override]


def entry_point() -> None:
    """Hydra's main with the sweep guard registered and signal handling set up."""
    sys.argv[1:] = with_override(sys.argv[1:], SWEEP_GUARD)
    cli.install_signal_handlers(forward=forward_to_workers)

    def close_sweep() -> None:  # a sweep that did not reach its end
        _sweep.close("KILLED" if cli.stop_requested() else "FAILED")

    cli.main_guard(hydra_usage(main), cleanup=close_sweep)


def hydra_usage(app):
    """``app`` with Hydra's refusals of its command line (a ValueError raised by
    Hydra itself, e.g. ``-m`` with ``--cfg``) turned into one line."""

    def checked() -> None:
        try:
            app()
        except ValueError as err:
            frames = traceback.extract_tb(err.__traceback__)
            if not frames or "hydra" not in Path(frames[-1].filename).parts:
                raise
            raise ConfigError(f"{err} (see --help)") from None

    return checked


if __name__ == "__main__":
    # Run as the module Hydra imports for SweepGuard, so both share one SweepRun.
    from mnist_regression import train

    train.entry_point()
