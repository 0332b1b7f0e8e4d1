"""One training run from a validated config: data, model, loop, its folder."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..common import record
from ..common.cli import check_stop, shutting_down
from ..common.config import AUTO_RATE
from ..common.errors import DataError, Terminated
from ..common.io import save_json, save_npz, sha256_of
from ..core.losses import TASKS
from ..core.models import LinearModel, curvature_at_zero
from ..core.objective import Objective
from ..core.passes import cores
from ..core.training import (
    METRICS,
    SPLITS,
    Dataset,
    DivergenceError,
    History,
    Schedule,
    train,
    with_stable_rate,
)
from ..data.prepare import (
    check_prepared_settings,
    class_labels,
    load_task,
    scaled,
)
from ..tracking import provenance
from ..tracking.liveness import process_tags
from . import reuse
from .results import write_histories

log = logging.getLogger("mnist_regression")


@dataclass
class RunResult:
    model: LinearModel
    history: History
    final: dict[str, float]
    labels: list[str]
    run_id: str | None
    config: dict  # the resolved configuration


class ProgressLines:
    """Off a terminal (a pipeline stage, a sweep's job), where no progress bar
    shows: a line when the run starts and, every ``every`` seconds, one with the
    epoch, the validation loss and accuracy; the app logs the end."""

    def __init__(self, name: str, enabled: bool, every: float = 10.0):
        self.name, self.enabled, self.every = name, enabled, every
        self.start = self.last = time.monotonic()
        if enabled:
            log.info("%s: started", name)

    def eval(self, epoch: int, values: Mapping[str, float]) -> None:
        now = time.monotonic()
        if self.enabled and now - self.last >= self.every:
            self.last = now
            log.info(
                "%s: epoch %d, val_loss %.4f, val_accuracy %.4f (%.0f s)",
                self.name,
                epoch,
                values["val_loss"],
                values["val_accuracy"],
                now - self.start,
            )


def final_metrics(history: History) -> dict[str, float]:
    best = history.at(history.best_epoch)
    final = {
        f"final_{split}_{kind}": best[f"{split}_{kind}"]
        for split in SPLITS
        for kind in ("loss", "accuracy")
    }
    final |= {"best_epoch": history.best_epoch, "epochs_run": history.epochs_run}
    return final


@dataclass
class Setup:
    """What a run trains: its data, model, objective and schedule, and the
    resolved config it records (``optimizer.lr`` the rate used)."""

    kind: str
    task: str
    arrays: dict
    data: Dataset
    model: LinearModel
    objective: Objective
    schedule: Schedule
    labels: list[str]
    resolved: dict


def set_up(cfg: DictConfig) -> Setup:
    """Load the prepared data of the configured model and build what it trains."""
    kind = cfg.model.name.value
    task = TASKS[kind]
    check_prepared_settings(cfg.data, cfg.seed)
    arrays = load_task(Path(cfg.data.prepared_dir), task)
    data = Dataset.from_arrays(scaled(arrays, cfg.data.scale))
    model = LinearModel.zeros(kind, data.x["train"].shape[1], data.n_classes)
    objective = Objective.of(kind, cfg.model.l2, cfg.model.bias.value)
    schedule = Schedule(**OmegaConf.to_container(cfg.optimizer, enum_to_str=True))
    schedule = with_stable_rate(schedule, data, objective)
    warn_if_penalty_dominates(data, kind, objective.l2)
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if cfg.optimizer.lr == AUTO_RATE:  # logged and saved: the rate used
        share = "2" if schedule.averaged(len(data.x["train"])) else "1"
        log.info("optimizer.lr=auto: %s / (L + model.l2) = %.4g", share, schedule.lr)
        resolved["optimizer"]["lr"] = schedule.lr
    labels = class_labels(task, cfg.data.digits)
    return Setup(kind, task, arrays, data, model, objective, schedule, labels, resolved)


# A penalty this many times the data loss's curvature at w = 0 holds the weights
# so close to 0 that the run learns next to nothing: legal, and worth a warning.
DOMINANT_PENALTY = 100.0


def warn_if_penalty_dominates(data: Dataset, kind: str, l2: float) -> None:
    if l2 <= 0:
        return
    curvature = curvature_at_zero(data.x["train"], kind, data.n_classes)
    if l2 > DOMINANT_PENALTY * curvature:
        log.warning(
            "model.l2=%g is %.0f times the curvature of the data loss at w = 0 "
            "(L = %.3g): the penalty holds the weights near 0, so expect accuracy "
            "near chance; lower model.l2",
            l2,
            l2 / curvature,
            curvature,
        )


def run_training(
    cfg: DictConfig,
    out_dir: Path,
    label: str,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    ready: Callable[[], None] | None = None,
    run_key: str | None = None,
) -> RunResult:
    """Train the configured model and write its folder, the record of its run
    (``common.record``): ``run.json`` first, ``history.csv`` as it trains, then
    ``weights.npz`` and ``metrics.json``. A run that fails (divergence) or is
    stopped writes ``metrics.json`` with its status and reason. MLflow is written
    from the folder by the command's recorder (``tracking.recorder``), never here;
    ``ready``, called once ``run.json`` is written, waits for it (``run_key``:
    the key it writes there, else a new one).
    """
    own = {"run_key": run_key} if run_key else {}
    setup = set_up(cfg)
    data_file = Path(cfg.data.prepared_dir) / f"{setup.task}.npz"
    digest = sha256_of(data_file)
    name = run_name or provenance.run_name(cfg)
    run_tags = provenance.training_tags(setup.kind, setup.task, digest, tags or {})
    dataset = provenance.dataset(data_file, digest, setup.arrays)
    key = reuse.job_key(setup.resolved, digest, cores()) if cfg.reuse_dir else None
    if key and (kept := reuse.find(cfg.reuse_dir, key, name)):
        return reused(kept, setup, out_dir, name, run_tags, dataset, own)
    started = start_record(out_dir, name, setup.resolved, run_tags, dataset, **own)
    if ready is not None:
        ready()
    show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    history_log = record.HistoryLog(out_dir / record.HISTORY_FILE, label, METRICS)
    with Progress(name, setup.schedule.max_epochs, show, history_log) as progress:
        started_at = time.perf_counter()
        try:
            history = train(
                setup.model,
                setup.data,
                setup.schedule,
                np.random.default_rng(cfg.seed),
                setup.objective,
                progress.on_eval,
            )
        except DivergenceError as err:
            save_failure(out_dir, label, str(err), setup.resolved)
            raise
        except (KeyboardInterrupt, Terminated) as err:
            with shutting_down():  # the evaluations so far
                save_interrupted(out_dir, label, progress.history, setup.resolved, err)
            raise
        seconds = time.perf_counter() - started_at  # the loop, evaluations included
    final = final_metrics(history)
    result = RunResult(setup.model, history, final, setup.labels, None, setup.resolved)
    try:
        save_results(result, out_dir, label)
    except OSError as err:  # a disk that filled during the run, say
        kept = Path(tempfile.mkdtemp(prefix="mnist-regression-outputs-"))
        save_results(result, kept, label)
        raise DataError(
            f"cannot write the outputs to {out_dir} ({err.strerror or err}); "
            f"the weights, history and metrics are kept in {kept}: copy them "
            "there once the folder is writable again"
        ) from None
    record.end_run(out_dir, train_seconds=seconds)
    if key:
        reuse.keep(cfg.reuse_dir, key, out_dir, started["run_key"])
    return result


def start_record(out_dir: Path, name: str, resolved: dict, tags, dataset, **extra):
    """The job folder's ``run.json`` (``common.record``), before training starts."""
    return record.start_run(
        out_dir,
        {
            "run_name": name,
            "parent_key": os.environ.get(record.SWEEP_KEY_VARIABLE) or None,
            "params": resolved,
            "tags": {**tags, **process_tags()},
            "dataset": dataset,
            **extra,
        },
    )


def reused(kept: reuse.Kept, setup: Setup, out_dir, name, tags, dataset, own):
    """The RunResult of a job kept in ``reuse_dir`` (``app.reuse``): its outputs
    copied to ``out_dir``, a ``run.json`` of its own naming the run it copies."""
    job = kept.job()
    reuse.restore(kept, out_dir, setup.resolved)
    start_record(
        out_dir, name, setup.resolved, tags, dataset, reused_from=kept.run_key, **own
    )
    record.end_run(out_dir)
    log.info("%s: the same job finished before; its outputs reused", name)
    model = LinearModel(setup.kind, job.model.weights, job.model.bias)
    final = {k: job.metrics[k] for k in final_metrics(job.history)}
    return RunResult(model, job.history, final, setup.labels, None, setup.resolved)


class Progress:
    """Each evaluation: checked for a stop request, appended to ``history.csv``,
    shown on a progress bar (a terminal) or as lines every few seconds
    (elsewhere)."""

    def __init__(self, name: str, epochs: int, show: bool, history_log) -> None:
        self.history_log = history_log
        self.history = History()  # what an interrupted run still writes
        self.bar = tqdm(total=epochs, disable=not show, unit="epoch")
        self.lines = ProgressLines(name, enabled=not show)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        self.history_log.close()

    def on_eval(self, epoch: int, values: dict[str, float]) -> None:
        check_stop()
        self.history.append(epoch, values)
        self.history_log.append(epoch, values)
        self.bar.update(epoch - self.bar.n)
        self.bar.set_postfix(
            val_loss=f"{values['val_loss']:.4f}",
            val_acc=f"{values['val_accuracy']:.4f}",
        )
        self.lines.eval(epoch, values)


def save_results(result: RunResult, directory: Path, label: str) -> None:
    """The run's DVC outputs: history.csv, metrics.json and weights.npz."""
    history = result.history
    weights = directory / "weights.npz"
    save_npz(weights, {"weights": result.model.weights, "bias": result.model.bias})
    write_histories(directory / "history.csv", [(label, history)])
    save_json(  # last: its presence marks a complete job folder
        directory / "metrics.json",
        {
            "run": label,
            "status": "FINISHED",
            "stop_reason": history.stop_reason,
            **result.final,
            "config": result.config,
        },
    )


def save_interrupted(
    directory: Path, label: str, history: History, config: dict, err: BaseException
) -> None:
    """An interrupted run's ``history.csv`` (its evaluations so far) and a
    ``metrics.json`` marking it KILLED; no weights: the job did not finish."""
    (directory / "weights.npz").unlink(missing_ok=True)
    record.end_run(directory)
    if history.epoch:
        write_histories(directory / "history.csv", [(label, history)])
    reason = "Ctrl-C" if isinstance(err, KeyboardInterrupt) else "SIGTERM"
    save_json(
        directory / "metrics.json",
        {
            "run": label,
            "status": "KILLED",
            "failure_reason": f"stopped by {reason} after {history.epochs_run} epochs",
            "config": config,
        },
    )


def save_failure(directory: Path, label: str, reason: str, config: dict) -> None:
    """``metrics.json`` of a failed run: the report lists it as failed."""
    for stale in ("weights.npz", "history.csv"):
        (directory / stale).unlink(missing_ok=True)
    record.end_run(directory)
    save_json(
        directory / "metrics.json",
        {"run": label, "status": "FAILED", "failure_reason": reason, "config": config},
    )
