"""One job of the Hydra app: its config validated, the run trained, errors told
in one line; and the app's entry point (the sweep guard registered, signals
handled, Hydra's refusals of a command line in one line)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ..common import cli
from ..common.config import check_yaml, train_config
from ..common.errors import ConfigError, UserError
from ..core.training import DivergenceError
from ..tracking import provenance
from .run import run_training
from .sweep import close_sweep, forward_to_workers

# ${pid:} in hydra.run.dir keeps runs started in the same second apart.
OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
log = logging.getLogger("mnist_regression")
_MAIN_PID = os.getpid()


def output_dir(cfg: DictConfig, hydra_cfg, multirun: bool) -> Path:
    """``output_dir`` (one numbered folder per multirun job), else Hydra's own."""
    if cfg.output_dir is None:
        return Path(hydra_cfg.runtime.output_dir)
    directory = Path(cfg.output_dir)
    return directory / str(hydra_cfg.job.num) if multirun else directory


# Less free space than this where a run writes its outputs stops it before it
# trains (its weights, history and metrics take well under a megabyte).
MIN_FREE_BYTES = 16 << 20


def check_writable(directory: Path) -> None:
    """The output folder can be created and written, with room to spare; else
    one line naming output_dir, before any training."""
    fix = "point output_dir at a writable folder with free space"
    if directory.exists() and not directory.is_dir():
        raise ConfigError(
            f"config key 'output_dir': {directory} is a file, not a folder; {fix}"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory, prefix=".write-probe-"):
            pass
        free = shutil.disk_usage(directory).free
    except OSError as err:
        reason = err.strerror or str(err)
        raise ConfigError(
            f"config key 'output_dir': cannot write in {directory} ({reason}); {fix}"
        ) from None
    if free < MIN_FREE_BYTES:
        raise ConfigError(
            f"config key 'output_dir': {directory} has only {free >> 10} KiB free; "
            f"{fix}"
        )


def run_job(cfg: DictConfig) -> float | None:
    """The body of the Hydra app: train one configuration; the final validation
    loss (what a Hydra sweeper minimises), or None for a diverged sweep job."""
    started = time.monotonic()
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    worker = os.environ.get(MAIN_PID_VARIABLE, str(os.getpid())) != str(os.getpid())
    worker = worker and not os.environ.get("SUBMITIT_EXECUTOR")  # SLURM: its own
    if worker:
        watch_the_main_process()  # it ends with the command
    if os.getpid() != _MAIN_PID:  # a joblib worker: signals end its run, then it
        cli.install_signal_handlers()
        cli.skip_final_collection()
    elif os.environ.get("SUBMITIT_EXECUTOR") and not cli.handlers_installed():
        # a submitit (SLURM) job, where SIGTERM is ignored: scancel ends its
        # run KILLED, its history kept
        cli.install_signal_handlers()
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
        check_writable(out)
        if multirun or not cfg.tracking.enabled:  # a sweep's main process records
            result = run_training(cfg, out, run_name, run_name, tags)
        else:
            result = recorded(cfg, out, run_name, tags)
    except DivergenceError as err:
        cli.print_error(err)
        if multirun:
            return None  # recorded as a FAILED run; the rest of the sweep goes on
        sys.exit(1)
    except UserError as err:
        cli.print_error(err)
        sys.exit(1)
    except (KeyboardInterrupt, cli.Terminated) as err:
        if os.getpid() == _MAIN_PID and not worker:
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


def recorded(cfg: DictConfig, out: Path, run_name: str, tags: dict):
    """A single run with its recorder (``tracking.recorder``) beside it: MLflow's
    import and the store's set-up overlap the data's loading; a store the user
    must fix stops the run before it trains."""
    from ..common.record import new_key
    from ..tracking.recorder import Recorder

    key = new_key()
    recorder = Recorder(cfg.tracking, [out], key=key).start()
    try:
        result = run_training(
            cfg, out, run_name, run_name, tags, recorder.wait_ready, run_key=key
        )
    except BaseException as err:
        stopped = isinstance(err, KeyboardInterrupt | cli.Terminated)
        recorder.finish("KILLED" if stopped else "FAILED", reason=str(err) or None)
        raise
    recorder.finish()
    result.run_id = recorder.run_id(out)
    return result


SWEEP_GUARD = (
    "++hydra.callbacks.sweep_guard._target_=mnist_regression.app.sweep.SweepGuard"
)


def with_override(args: list[str], override: str) -> list[str]:
    """``args`` with ``override`` among its overrides: Hydra's parser takes them as
    one run of positional arguments, so flags such as ``--cfg job`` may follow."""
    for i, arg in enumerate(args):
        if "=" in arg and not arg.startswith("-"):
            return [*args[:i], override, *args[i:]]
    return [*args, override]


# The command's own process, for its workers: each ends when it is gone.
MAIN_PID_VARIABLE = "MNIST_REGRESSION_MAIN_PID"
_watching: list[bool] = []


def watch_the_main_process() -> None:
    """In a worker (joblib, on this machine): SIGTERM to itself once the process
    that started it is gone, by any signal, SIGKILL included, so that its job
    ends KILLED in its folder instead of training on as an orphan."""
    if _watching:
        return
    _watching.append(True)
    if not cli.handlers_installed():
        cli.install_signal_handlers()
    cli.end_with_parent()


def entry_point(main) -> None:
    """Hydra's ``main`` with the sweep guard registered and signal handling set up."""
    os.environ[MAIN_PID_VARIABLE] = str(os.getpid())
    sys.argv[1:] = with_override(sys.argv[1:], SWEEP_GUARD)
    cli.install_signal_handlers(forward=forward_to_workers)
    if os.environ.get("DVC_STAGE"):  # a stage of dvc repro / dvc exp run
        cli.end_with_parent()
    cli.main_guard(hydra_usage(main, config_files(sys.argv[1:])), cleanup=close_sweep)


def config_files(argv: list[str]) -> list[Path]:
    """The YAML files Hydra will read: conf/, and the primary config a command
    line names with --config-dir/--config-name (DVC's params.yaml)."""
    files = sorted(provenance.CONF.rglob("*.yaml"))
    if "--config-name" in argv and "--config-dir" in argv:
        folder = Path(argv[argv.index("--config-dir") + 1])
        name = argv[argv.index("--config-name") + 1]
        files.append(folder / f"{name.removesuffix('.yaml')}.yaml")
    return [f for f in files if f.is_file()]


def hydra_usage(app, files: list[Path] = ()):
    """``app`` with Hydra's refusals of its command line (a ValueError raised by
    Hydra itself, e.g. ``-m`` with ``--cfg``) turned into one line, and the YAML
    ``files`` it reads checked first."""

    def checked() -> None:
        check_yaml(files)
        try:
            app()
        except ValueError as err:
            frames = traceback.extract_tb(err.__traceback__)
            if not frames or "hydra" not in Path(frames[-1].filename).parts:
                raise
            raise ConfigError(f"{err} (see --help)") from None

    return checked
