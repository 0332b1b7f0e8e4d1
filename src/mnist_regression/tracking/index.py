"""MLflow as an index of job folders (``common.record``): each folder's run is
found by its run key, created if missing and completed from what the folder
holds, so that indexing a folder twice adds nothing and a half-indexed one is
finished. ``python -m mnist_regression.tracking.store sync PATH...`` indexes any
folders into any store: a sweep, ``results/``, a folder copied from a cluster,
runs a store missed while it was locked, or a clone moved to another folder.

A run carries the tag ``run_key`` and, once its folder's ``metrics.json`` is in
with its final metrics, artifacts and model, ``index.complete``; the evaluations
it holds are the steps of its ``epoch/val_loss``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..common.errors import DataError
from ..common.io import sha256_of
from ..common.record import (
    HISTORY_FILE,
    METRICS_FILE,
    RUN_FILE,
    SWEEP_FILE,
    WEIGHTS_FILE,
    now_ms,
    read_json,
    read_rows,
)
from ..data.prepare import PIXEL_MAX
from .liveness import gone_from_here
from .provenance import REUSED_TAG, WEIGHTS_TAG

# Per-epoch metrics are named epoch/<name>: MLflow's run page then shows them in
# a section of their own, ahead of the single values of the whole run.
EPOCH_SECTION = "epoch"
RUN_KEY_TAG = "run_key"
PROBE_METRIC = "val_loss"  # every evaluation has it
COMPLETE_TAG = "index.complete"
FINAL_KEYS = ("best_epoch", "epochs_run")


def run_folders(paths: list[Path]) -> list[Path]:
    """Every job folder (one with ``run.json``) at or under ``paths``, in order."""
    found: list[Path] = []
    for path in paths:
        if (path / RUN_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(
                (p.parent for p in path.rglob(RUN_FILE)),
                key=lambda p: [int(s) if s.isdigit() else s for s in p.parts],
            )
    return list(dict.fromkeys(found))


@dataclass
class Indexed:
    """What one pass wrote: folders whose run was created, completed, or that
    held nothing new."""

    created: list[Path] = field(default_factory=list)
    updated: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{len(self.created)} runs created",
            f"{len(self.updated)} completed",
            f"{len(self.unchanged)} already indexed",
        ]
        return ", ".join(parts)


class Index:
    """The runs of one experiment of a store, by run key."""

    def __init__(self, client, experiment_id: str) -> None:
        self.client, self.experiment_id = client, experiment_id
        self._runs: dict[str, Any] = {}  # run key -> Run, as last seen

    def find(self, key: str):
        if key not in self._runs:
            found = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.{RUN_KEY_TAG} = '{key}'",
                max_results=1,
            )
            if not found:
                return None
            self._runs[key] = found[0]
        return self._runs[key]

    def index(self, folders: list[Path], done: Indexed | None = None) -> Indexed:
        done = done or Indexed()
        for folder in folders:
            record = read_json(folder / RUN_FILE)
            if record is None or "run_key" not in record:
                done.unreadable.append((folder, f"{RUN_FILE} is missing or damaged"))
                continue
            outcome = self.index_folder(folder, record)
            getattr(done, outcome).append(folder)
        return done

    def parent_id(self, folder: Path, key: str) -> str | None:
        """The run of the sweep whose ``sweep.json`` lies above ``folder``."""
        run = self.find(key)
        if run is not None:
            return run.info.run_id
        for above in folder.parents:
            sweep = read_json(above / SWEEP_FILE)
            if sweep is not None and sweep.get("run_key") == key:
                return self.ensure_parent(above)
        return None

    def ensure_parent(self, jobs_dir: Path) -> str:
        """The parent run of the sweep whose ``sweep.json`` is in ``jobs_dir``,
        created (with its grid as params) if missing."""
        sweep = read_json(jobs_dir / SWEEP_FILE)
        if sweep is None or "run_key" not in sweep:
            raise DataError(f"{jobs_dir / SWEEP_FILE} is missing or damaged")
        key = sweep["run_key"]
        run = self.find(key)
        if run is not None:
            return run.info.run_id
        run_id = self.client.create_run(
            self.experiment_id,
            run_name=sweep.get("run_name"),
            tags={**sweep.get("tags", {}), RUN_KEY_TAG: key},
            start_time=sweep.get("started"),
        ).info.run_id
        for name, values in sweep.get("grid", {}).items():
            self.client.log_param(run_id, name, values)
        return run_id

    def index_folder(self, folder: Path, record: dict) -> str:
        """Create or complete the run of one job folder; which of the two, or
        ``unchanged``."""
        from mlflow.entities import Metric

        from .session import metric_batches

        key = record["run_key"]
        run = self.find(key)
        created = run is None
        if created:
            run = self._create(folder, record)
        if run.data.tags.get(COMPLETE_TAG) == "true":
            return "unchanged"
        run_id = run.info.run_id
        logged = self.logged_epochs(run_id)
        new = [
            r for r in read_rows(folder / HISTORY_FILE) if int(r["epoch"]) not in logged
        ]
        stamp = now_ms()
        points = [
            Metric(f"{EPOCH_SECTION}/{name}", value, stamp, int(row["epoch"]))
            for row in new
            for name, value in row.items()
            if name != "epoch"
        ]
        for batch in metric_batches(points):
            self.client.log_batch(run_id, metrics=batch)
        metrics = read_json(folder / METRICS_FILE)
        if metrics is not None:
            self._complete(folder, run, record, metrics)
        ended = metrics is None and self.end_if_orphaned(run, record)
        self._runs.pop(key, None)  # written to: found again when next asked
        if created:
            return "created"
        return "updated" if new or metrics is not None or ended else "unchanged"

    def end_if_orphaned(self, run, record: dict) -> bool:
        """End as KILLED the run of a folder without ``metrics.json`` whose job's
        process is gone from this host (SIGKILL, a machine that stopped); a
        ``metrics.json`` that appears later still completes it."""
        tags = record.get("tags", {})
        if run.info.status != "RUNNING" or not gone_from_here(tags):
            return False
        self.client.set_tag(
            run.info.run_id,
            "failure_reason",
            f"process {tags['pid']} ended without writing metrics.json (killed, "
            "or the machine stopped)",
        )
        self.client.set_terminated(run.info.run_id, "KILLED")
        return True

    def end_orphans(self) -> list[str]:
        """End as KILLED the runs left RUNNING by a command of this host whose
        process is gone (a recorder killed with SIGKILL: nobody ended its
        runs, and ``dvc repro`` may since have removed their folders): the
        jobs first, then their parents with their best job. Their ids."""
        running = self.client.search_runs(
            [self.experiment_id],
            filter_string="attributes.status = 'RUNNING'",
            max_results=10000,
        )
        orphans = [r for r in running if gone_from_here(r.data.tags)]
        for run in sorted(orphans, key=lambda r: "sweep_grid" in r.data.tags):
            tags = run.data.tags
            if "sweep_grid" in tags:
                close_parent(self.client, run.info.run_id, "KILLED", None)
                continue
            self.client.set_tag(
                run.info.run_id,
                "failure_reason",
                f"process {tags['pid']} ended without closing its run (killed, "
                "or the machine stopped)",
            )
            self.client.set_terminated(run.info.run_id, "KILLED")
        return [r.info.run_id for r in orphans]

    def logged_epochs(self, run_id: str) -> set[int]:
        """The epochs whose evaluation the run holds (whoever wrote them)."""
        name = f"{EPOCH_SECTION}/{PROBE_METRIC}"
        return {m.step for m in self.client.get_metric_history(run_id, name)}

    def _create(self, folder: Path, record: dict):
        tags = {**record.get("tags", {}), RUN_KEY_TAG: record["run_key"]}
        if record.get("parent_key"):
            parent = self.parent_id(folder, record["parent_key"])
            if parent:
                tags["mlflow.parentRunId"] = parent
        if record.get("reused_from"):  # the run that trained it, by its key
            trainer = self.find(record["reused_from"])
            if trainer is not None and trainer.data.tags.get(COMPLETE_TAG) != "true":
                # its command was killed before recording the end: the copy
                # holds that very folder, so the trainer's run is completed
                # from it (its status, every point), ended KILLED or not
                self.index_folder(
                    folder,
                    {**record, "run_key": record["reused_from"], "reused_from": None},
                )
            tags[REUSED_TAG] = trainer.info.run_id if trainer else record["reused_from"]
            tags["mlflow.note.content"] = (
                f"A copy of the job run {tags[REUSED_TAG]} trained with the same "
                "settings, code and data: its outputs, curves and final metrics."
            )
        run = self.client.create_run(
            self.experiment_id,
            run_name=record.get("run_name"),
            tags=tags,
            start_time=record.get("started"),
        )
        from .session import log_params

        log_params(self.client, run.info.run_id, flatten(record.get("params", {})))
        if record.get("dataset"):
            log_dataset(self.client, run.info.run_id, record["dataset"])
        return self.client.get_run(run.info.run_id)

    def _complete(self, folder: Path, run, record: dict, metrics: dict):
        from .session import log_metrics

        run_id = run.info.run_id
        status = metrics.get("status", "FINISHED")
        final = {
            k: v
            for k, v in metrics.items()
            if k.startswith("final_") or k in FINAL_KEYS
        }
        if record.get("train_seconds") is not None:
            final["train_seconds"] = record["train_seconds"]
        log_metrics(self.client, run_id, final)
        for tag in ("stop_reason", "failure_reason"):
            if metrics.get(tag):
                self.client.set_tag(run_id, tag, str(metrics[tag])[:5000])
        if (folder / WEIGHTS_FILE).is_file():  # finds the run of any copy of it
            self.client.set_tag(run_id, WEIGHTS_TAG, sha256_of(folder / WEIGHTS_FILE))
        if status == "FINISHED" and "failure_reason" in run.data.tags:
            self.client.delete_tag(run_id, "failure_reason")  # ended KILLED before
        params = record.get("params", {})
        wanted = params.get("tracking", {}).get("artifacts", True)
        ended = record.get("ended") or now_ms()
        if status == "FINISHED" and wanted and (folder / WEIGHTS_FILE).is_file():
            try:
                log_outputs(self.client, run_id, folder, record)
            except BaseException:
                # the run's true status now; the next sync adds the artifacts
                with contextlib.suppress(Exception):
                    self.client.set_terminated(run_id, status, ended)
                raise
        self.client.set_terminated(run_id, status, ended)
        self.client.set_tag(run_id, COMPLETE_TAG, "true")


def log_dataset(client, run_id: str, dataset: dict) -> None:
    """The prepared data as the run's input. Two commands on the same data may
    both find it missing and both insert it; the loser finds it on a second try."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    context = InputTag("mlflow.data.context", "training")
    for attempt in range(3):
        try:
            client.log_inputs(run_id, [DatasetInput(Dataset(**dataset), [context])])
            return
        except Exception as err:
            if attempt == 2 or "UNIQUE constraint" not in str(err):
                raise
            time.sleep(0.1)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: ``optimizer.lr`` -> its value as text."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


@contextlib.contextmanager
def fluent_target(uri: str, experiment_id: str):
    """MLflow's fluent API pointed at ``uri`` and the experiment (a logged model's
    home) for the duration, then put back as it was: ``mlflow.set_tracking_uri``
    and ``set_experiment`` also set MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID
    in the environment, which later runs and child processes would inherit."""
    import mlflow

    saved = {
        k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")
    }
    previous = mlflow.get_tracking_uri() if saved["MLFLOW_TRACKING_URI"] else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def log_outputs(client, run_id: str, folder: Path, record: dict) -> None:
    """``config.yaml``, ``weights.npz``, the weights as images, and the MLflow Model
    (``serving``) of a finished job folder."""
    import numpy as np

    from ..core.losses import TASKS
    from ..core.models import LinearModel
    from ..data.prepare import class_digits, class_labels
    from ..figures import run_figures
    from . import serving

    params = record["params"]
    kind, data = params["model"]["name"], params["data"]
    task = TASKS[kind]
    with np.load(folder / WEIGHTS_FILE) as arrays:
        model = LinearModel(kind, arrays["weights"], arrays["bias"])
    classes = class_digits(task, data["digits"])
    labels = class_labels(task, data["digits"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(params)))
        (out / WEIGHTS_FILE).write_bytes((folder / WEIGHTS_FILE).read_bytes())
        run_figures.save_weight_pngs(model, labels, out, record.get("run_name", ""))
        client.log_artifacts(run_id, str(out))
    example = example_input(Path(data["prepared_dir"]) / f"{task}.npz", model)
    experiment = client.get_run(run_id).info.experiment_id
    with fluent_target(client.tracking_uri, experiment):
        factor = PIXEL_MAX / float(data["scale"])
        serving.log_model(run_id, model, example, classes, factor)


def example_input(path: Path, model):
    """Five test images of the run's prepared data (pixels in [0, 1]), or zeros
    where the data is not beside the folder (copied from elsewhere)."""
    import numpy as np

    n_pixels = model.weights.shape[0]
    try:
        with np.load(path) as arrays:
            return np.asarray(arrays["x_test"][:5], dtype=np.float32)
    except (OSError, KeyError, ValueError):
        return np.zeros((1, n_pixels), dtype=np.float32)


def close_parent(client, run_id: str, status: str, curves: list | None) -> None:
    """Record a sweep's best job (lowest final validation loss), the values over
    seeds, the validation curves of the finished jobs (``curves``: (label,
    History) pairs, if given), and end the parent run."""
    parent = client.get_run(run_id)
    if curves:
        log_curves(client, run_id, parent.info.run_name, curves)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}' "
        "and attributes.status = 'FINISHED'",
        order_by=["metrics.final_val_loss ASC"],
        max_results=10000,
    )
    if children:
        best = children[0]
        client.set_tag(run_id, "best_run_id", best.info.run_id)
        client.set_tag(run_id, "best_run_name", best.info.run_name)
        for key in ("final_val_loss", "final_val_accuracy", "final_test_accuracy"):
            if key in best.data.metrics:
                client.log_metric(run_id, f"best_{key}", best.data.metrics[key])
    client.log_metric(run_id, "jobs_finished", len(children))
    grid = json.loads(parent.data.tags.get("sweep_grid", "{}"))
    log_over_seeds(client, run_id, grid, children)
    client.set_terminated(run_id, status)


def log_over_seeds(client, run_id: str, grid: Mapping, children: list) -> None:
    """Where the grid replicates other values over ``seed``: each value's final
    validation and test accuracy, mean over its seeds and 95% interval, as
    ``over_seeds/<value>/<metric>_{mean,low,high}`` (and ``_seeds``)."""
    keys = [key.lstrip("+") for key in grid]
    if "seed" not in keys or len(keys) < 2:
        return
    from ..core.stats import mean_interval
    from .session import log_metrics

    keys.remove("seed")
    groups: dict[str, list] = {}
    for child in children:
        params = child.data.params
        value = " ".join(f"{k.split('.')[-1]} {params.get(k)}" for k in keys)
        groups.setdefault(value, []).append(child)
    values = {}
    for value, runs in groups.items():
        values[f"over_seeds/{value}/seeds"] = len(runs)
        for split in ("val", "test"):
            name = f"final_{split}_accuracy"
            found = [r.data.metrics[name] for r in runs if name in r.data.metrics]
            if not found:
                continue
            for suffix, number in zip(
                ("mean", "low", "high"), mean_interval(found), strict=True
            ):
                values[f"over_seeds/{value}/{split}_accuracy_{suffix}"] = number
    log_metrics(client, run_id, values)


def log_curves(client, run_id: str, name: str, labelled: list) -> None:
    """``curves.png``: the finished jobs' validation curves, side by side."""
    from ..figures.drawing import save, sweep_figure

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "curves.png"
        save(sweep_figure(labelled, name), path)
        client.log_artifact(run_id, str(path))
