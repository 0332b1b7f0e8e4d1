"""What a run logs, and how: every MLflow run the project writes starts here.

A training run (``open_run``, then ``log_outcome``) records
- params: every value of its resolved config (``optimizer.lr`` is the rate used,
  also under ``lr=auto``);
- tags: ``model``, ``task``, ``data_sha256``, the source (``provenance``: commit,
  ``git_dirty``, ``dvc.stage``, ``dvc.experiment``), ``host``, ``pid``,
  ``hydra_overrides``, in a sweep ``sweep``, ``sweep_job`` and its parent run;
  at the end ``stop_reason`` and ``weights_sha256`` (of the job folder's
  ``weights.npz``), or ``failure_reason``;
- its dataset (the prepared file, by digest) as an input;
- per evaluation, as ``epoch/<name>`` at the epoch's step: the losses and
  accuracies of each split, ``weight_norm`` and ``learning_rate``; at the end
  the ``final_*`` metrics of the best epoch,
  ``best_epoch``, ``epochs_run`` and ``train_seconds``;
- artifacts: ``config.yaml``, ``weights.npz``, the weights as images, and the
  MLflow Model ``model`` (``serving``).
A sweep's parent run (``SweepRun``) records its grid as params, the tags
``sweep_grid`` and ``sweep``, and when it ends its best job (``best_run_id``,
``best_run_name``, ``best_final_*``), ``jobs_finished`` and ``curves.png``.

How it is written (buffered, retried, kept when the store refuses) is in
``writer``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..common.cli import check_stop
from ..common.io import save_json, save_npz
from ..common.record import SWEEP_FILE, SWEEP_KEY_VARIABLE, new_key, now_ms
from ..core.losses import LOSSES
from ..data.prepare import PIXEL_MAX, class_digits
from . import provenance
from .index import COMPLETE_TAG, RUN_KEY_TAG
from .liveness import mark_stale_runs, process_tags
from .session import log_metrics, open_session
from .target import describe_failure
from .writer import MlflowRun, NullRun

# Set by a sweep's main process: the MLflow run its jobs are children of.
PARENT_RUN_VARIABLE = "MNIST_REGRESSION_PARENT_RUN"
# In a sweep's Hydra folder: its parent run, found again when the sweep resumes.
SWEEP_RECORD = "sweep_run.json"


def open_run(
    cfg: DictConfig, run_name: str, params, tags, keep_dir: Path, dataset=None
) -> NullRun:
    """The run of one training job (not yet started: use it as a context)."""
    if not cfg.enabled:
        return NullRun()
    return MlflowRun(cfg, run_name, params, tags, keep_dir, dataset)


def training_tags(kind: str, task: str, digest: str, extra: Mapping[str, str]):
    """The tags a training run starts with (``extra``: the app's own)."""
    tags = {
        "model": kind,
        "task": task,
        "data_sha256": digest,
        **provenance.source_tags(),
        **extra,
    }
    if parent_run_id():
        tags["mlflow.parentRunId"] = parent_run_id()
    return tags


def log_outcome(
    run: NullRun, result, seconds: float, title: str, example, weights_sha256: str
) -> None:
    """What a finished training run adds: its final metrics, why it stopped, the
    digest of the ``weights.npz`` it wrote (which finds the run of a job folder,
    whichever run or DVC's run cache put it there) and, where
    ``tracking.artifacts`` asks for them, its artifacts and model."""
    run.log_metrics({**result.final, "train_seconds": seconds})
    run.set_tags(
        {
            "stop_reason": result.history.stop_reason,
            provenance.WEIGHTS_TAG: weights_sha256,
        }
    )
    if result.config["tracking"]["artifacts"] and run.run_id:
        log_artifacts(run, result.model, result.labels, result.config, title)
        data = result.config["data"]
        classes = class_digits(LOSSES[result.model.kind].task, data["digits"])
        run.log_model(result.model, example, classes, PIXEL_MAX / data["scale"])
    run.set_tags({COMPLETE_TAG: "true"})  # nothing left for `store sync` to add


def log_reused(run: NullRun, job, weights_sha256: str, source: str) -> None:
    """What a run of a reused job (``app.reuse``) adds: the final metrics and
    stop reason of ``source``, the run that trained it, and its weights' digest."""
    final = {
        k: v
        for k, v in job.metrics.items()
        if k.startswith("final_") or k in ("best_epoch", "epochs_run")
    }
    run.log_metrics(final)
    run.set_tags(
        {
            "stop_reason": job.history.stop_reason,
            provenance.WEIGHTS_TAG: weights_sha256,
            "mlflow.note.content": (
                f"Trained by run {source}: this run copies its outputs, "
                "curves and final metrics; its artifacts and model are there."
            ),
            COMPLETE_TAG: "true",
        }
    )


def parent_run_id() -> str | None:
    """The sweep's parent run, in a sweep's job."""
    return os.environ.get(PARENT_RUN_VARIABLE) or None


def finished(tracking: DictConfig, run_id: str) -> bool:
    """Whether ``run_id`` is a FINISHED, not deleted run of ``tracking``'s store."""
    try:
        run = open_session(tracking.uri).client.get_run(run_id)
    except Exception:
        return False
    return run.info.status == "FINISHED" and run.info.lifecycle_stage == "active"


def log_artifacts(run, model, labels, config: dict, title: str) -> None:
    """``config.yaml``, ``weights.npz`` and the weights as images."""
    from ..figures import run_figures

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        save_npz(out / "weights.npz", {"weights": model.weights, "bias": model.bias})
        run_figures.save_weight_pngs(model, labels, out, title)
        run.log_artifacts(out)


def sweep_name(grid: Mapping[str, str]) -> str:
    """A parent run's name: its DVC stage, inside ``dvc exp run`` the experiment
    (so that two experiments' sweeps of one stage never share a name), its grid:
    ``train@models (pudgy-clog): model.name=logistic,softmax seed=0,1``."""
    label = os.environ.get("DVC_STAGE") or "sweep"
    if os.environ.get("DVC_EXP_NAME"):
        label += f" ({os.environ['DVC_EXP_NAME']})"
    return f"{label}: " + " ".join(f"{k}={v}" for k, v in grid.items())


def write_sweep_record(jobs_dir: Path, key: str, name: str, grid: dict) -> None:
    """``sweep.json`` beside the job folders (``common.record``): the parent
    run's key, name and grid; its jobs learn the key from the environment."""
    jobs_dir.mkdir(parents=True, exist_ok=True)
    save_json(
        jobs_dir / SWEEP_FILE,
        {
            "run_key": key,
            "run_name": name,
            "grid": grid,
            "tags": {"sweep_grid": json.dumps(grid), **provenance.source_tags()},
            "started": now_ms(),
        },
    )
    os.environ[SWEEP_KEY_VARIABLE] = key


class SweepRun:
    """The MLflow parent run of a multirun: its grid, then its best job.

    Created once in the main process before any job starts (jobs started in
    parallel would race to create it); jobs find its id in the environment.
    """

    def __init__(self) -> None:
        self.client = self.run_id = None
        self.grid: dict[str, str] = {}

    def open(
        self,
        tracking: DictConfig,
        grid: dict[str, str],
        folder: str,
        resume=False,
        jobs_dir: Path | None = None,
    ) -> None:
        """Start the parent run in ``tracking``'s store, for the sweep of ``grid``
        whose Hydra folder is ``folder``. With ``resume``, a parent run of the same
        sweep that did not finish (interrupted, failed) is reopened instead, its
        jobs that did not finish deleted: they run again, the others are reused."""
        session = open_session(tracking.uri)
        target = session.target
        name = sweep_name(grid)
        record = Path(folder) / SWEEP_RECORD
        try:
            self.client = session.client
            experiment = session.experiment_id(tracking.experiment)
            identity = {"experiment_id": experiment, "name": name, "grid": grid}
            run_id = self.reopen(record, identity) if resume else None
            if run_id is not None:  # a reopened run keeps its key
                key = self.client.get_run(run_id).data.tags.get(RUN_KEY_TAG)
                if key is None:
                    key = new_key()
                    self.client.set_tag(run_id, RUN_KEY_TAG, key)
            else:
                key = new_key()
                run_id = self.client.create_run(
                    experiment,
                    run_name=name,
                    tags={
                        "sweep_grid": json.dumps(grid),
                        "sweep": folder,
                        RUN_KEY_TAG: key,
                        **provenance.source_tags(),
                        **process_tags(),
                    },
                ).info.run_id
                self.run_id = run_id  # closed by close() from here on
                for key, values in grid.items():
                    self.client.log_param(run_id, key, values)
        except Exception as err:
            check_stop()  # an interrupt that a library turned into another error
            raise target.refused(err, str(tracking.experiment)) or target.fail(
                f"cannot start the sweep's run ({describe_failure(err)})",
                "check the store, or set tracking.enabled=false",
            ) from None
        self.run_id, self.grid = run_id, dict(grid)
        os.environ[PARENT_RUN_VARIABLE] = self.run_id
        if resume:
            save_json(record, {**identity, "run_id": run_id})
        write_sweep_record(jobs_dir or Path(folder), key, name, grid)

    def reopen(self, record: Path, identity: dict) -> str | None:
        """The id of the parent run ``record`` names, set RUNNING again, if it is
        the same sweep's and did not finish; its unfinished jobs' runs deleted."""
        try:
            saved = json.loads(record.read_text())
        except (OSError, ValueError):
            return None
        if {k: saved.get(k) for k in identity} != identity:
            return None
        mark_stale_runs(self.client, [identity["experiment_id"]])
        try:
            run = self.client.get_run(saved["run_id"])
        except Exception:  # deleted for good, or never written
            return None
        info = run.info
        if info.lifecycle_stage != "active" or info.status in ("FINISHED", "RUNNING"):
            return None  # done, or another living sweep's
        self.client.update_run(info.run_id, status="RUNNING")
        self.run_id = info.run_id  # closed by close() from here on
        for key, value in process_tags().items():
            self.client.set_tag(info.run_id, key, value)
        unfinished = self.client.search_runs(
            [identity["experiment_id"]],
            filter_string=f"tags.mlflow.parentRunId = '{info.run_id}' "
            "and attributes.status != 'FINISHED'",
            max_results=10000,
        )
        for child in unfinished:
            self.client.delete_run(child.info.run_id)
        return info.run_id

    def close(self, status: str, curves: list | None = None) -> None:
        """Record the best job (lowest final validation loss), the validation
        curves of the finished jobs (``curves``: (label, History) pairs, if
        given), and end the run."""
        if self.run_id is None:
            return
        run_id, self.run_id = self.run_id, None
        os.environ.pop(PARENT_RUN_VARIABLE, None)
        os.environ.pop(SWEEP_KEY_VARIABLE, None)
        try:
            parent = self.client.get_run(run_id)
            if curves:
                self.log_curves(run_id, parent.info.run_name, curves)
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
            self.log_over_seeds(run_id, children)
            self.client.set_terminated(run_id, status)
        except (
            Exception
        ) as err:  # the jobs' runs are recorded; only the summary is lost
            print(
                f"warning: could not close the sweep's MLflow run {run_id}: "
                f"{describe_failure(err)}",
                file=sys.stderr,
            )

    def log_over_seeds(self, run_id: str, children: list) -> None:
        """Where the grid replicates other values over ``seed``: each value's
        final validation and test accuracy, mean over its seeds and 95% interval,
        as ``over_seeds/<value>/<metric>_{mean,low,high}`` (and ``_seeds``)."""
        from ..core.stats import mean_interval

        keys = [key.lstrip("+") for key in self.grid]
        if "seed" not in keys or len(keys) < 2:
            return
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
        log_metrics(self.client, run_id, values)

    def log_curves(self, run_id: str, name: str, labelled: list) -> None:
        """``curves.png``: the finished jobs' validation curves, side by side."""
        from ..figures.drawing import save, sweep_figure

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "curves.png"
            save(sweep_figure(labelled, name), path)
            self.client.log_artifact(run_id, str(path))
