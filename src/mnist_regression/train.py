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
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import cli
from .config import train_config
from .errors import UserError
from .results import job_failure, job_folders
from .run import run_training
from .training import DivergenceError

# ${pid:} in hydra.run.dir keeps runs started in the same second apart.
OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
WAIT_FOR_WORKERS = 60.0  # seconds a stopped sweep waits for its jobs to close runs


def output_dir(cfg: DictConfig, hydra_cfg, multirun: bool) -> Path:
    """``output_dir`` (one numbered folder per multirun job), else Hydra's own."""
    if cfg.output_dir is None:
        return Path(hydra_cfg.runtime.output_dir)
    directory = Path(cfg.output_dir)
    return directory / str(hydra_cfg.job.num) if multirun else directory


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if os.getpid() != _MAIN_PID:  # a joblib worker: signals end its run, then it
        cli.install_signal_handlers()
    overrides = list(hydra_cfg.overrides.task)
    tags = {"hydra_overrides": " ".join(overrides)}
    if multirun:
        tags |= {"sweep": hydra_cfg.sweep.dir, "sweep_job": str(hydra_cfg.job.num)}
    if os.environ.get("DVC_STAGE"):
        tags["dvc_stage"] = os.environ["DVC_STAGE"]
    try:
        cfg = train_config(cfg)
        if cfg.progress is None and multirun:
            cfg.progress = False
        label = " ".join(o for o in overrides if not o.startswith("output_dir="))
        run_name = " ".join([cfg.model.name.value, label]).strip()
        out = output_dir(cfg, hydra_cfg, multirun)
        result = run_training(cfg, out, label, run_name, tags)
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
    print(
        f"{run_name}: best epoch {final['best_epoch']} of {final['epochs_run']}, "
        f"val accuracy {final['final_val_accuracy']:.4f}, "
        f"test accuracy {final['final_test_accuracy']:.4f}"
        + (f", MLflow run {result.run_id}" if result.run_id else ""),
        flush=True,
    )
    return final["final_val_loss"]


_MAIN_PID = os.getpid()


class SweepGuard(Callback):
    """What a multirun does in its main process, before and after its jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from .store import prepare_target, resolve_target

        try:
            if config.tracking.enabled:
                prepare_target(resolve_target(config.tracking.uri))
        except UserError as err:
            cli.print_error(err)
            sys.exit(1)  # SystemExit passes Hydra's callback guard; stops the sweep
        if config.get("output_dir"):
            clear_job_folders(Path(config.output_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        base = Path(config.output_dir or config.hydra.sweep.dir)
        summary = sweep_summary(base)
        if summary:
            print(summary, file=sys.stderr, flush=True)


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


def entry_point() -> None:
    """Hydra's main with the sweep guard registered and signal handling set up."""
    sys.argv.append(
        "++hydra.callbacks.sweep_guard._target_=mnist_regression.train.SweepGuard"
    )
    cli.install_signal_handlers(forward=forward_to_workers)
    cli.main_guard(main)


if __name__ == "__main__":
    entry_point()
