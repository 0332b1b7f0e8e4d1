"""What a run could not write to its store, kept in ``mlflow-pending/`` beside
its outputs, and its replay into MLflow later."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..common.errors import DataError
from ..common.io import save_json
from .session import log_params, metric_batches, open_session
from .target import Target

PENDING = "mlflow-pending"  # folder of what could not be written, beside the outputs


def keep_pending(directory: Path, record: Mapping[str, Any], artifacts: Path | None):
    """Write what could not be sent to the store into ``directory/mlflow-pending``."""
    pending = directory / PENDING
    pending.mkdir(parents=True, exist_ok=True)
    if artifacts is not None and artifacts.is_dir():
        shutil.copytree(artifacts, pending / "artifacts", dirs_exist_ok=True)
    previous = pending / "run.json"
    merged = dict(record)
    if previous.is_file():  # a sweep job's folder is new; a rerun adds to it
        old = json.loads(previous.read_text())
        if old.get("run_id") == merged.get("run_id"):
            merged["metrics"] = old.get("metrics", []) + merged.get("metrics", [])
    save_json(previous, merged)
    return pending


def pending_folders(paths: Iterable[Path]) -> list[Path]:
    found = []
    for path in paths:
        if (path / "run.json").is_file() and path.name == PENDING:
            found.append(path)
        elif path.is_dir():
            found += sorted(p.parent for p in path.rglob(f"{PENDING}/run.json"))
    return found


def read_record(path: Path) -> dict:
    """A kept run's ``run.json``; DataError naming the file if it cannot be read
    (empty, cut short, or not what a run keeps)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(
            f"{path} cannot be read ({err}): it holds no replayable run; move it "
            "aside and replay the other folders"
        ) from None
    if not isinstance(record, dict) or "uri" not in record:
        raise DataError(
            f"{path} is not a kept run (no 'uri' recorded): move it aside and "
            "replay the other folders"
        )
    return record


def replay(pending: Path, uri: str | None = None) -> str:
    """Write one ``mlflow-pending`` folder into its store; remove it on success."""
    from mlflow.entities import Metric, RunTag
    from mlflow.exceptions import MlflowException

    record = read_record(pending / "run.json")
    target = (
        Target(uri, "--uri") if uri else Target(record["uri"], "recorded in run.json")
    )
    session = open_session(target)
    client = session.client
    run_id = record.get("run_id")
    try:
        if run_id:
            client.get_run(run_id)
    except MlflowException:
        run_id = None  # replayed into another store: a new run carries everything
    if not run_id:
        run_id = client.create_run(
            session.experiment_id(record["experiment"]),
            run_name=record["run_name"],
            tags=record.get("tags", {}),
        ).info.run_id
        log_params(client, run_id, record.get("params", {}))
    tags = [RunTag(k, str(v)) for k, v in record.get("late_tags", {}).items()]
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in record.get("metrics", [])]
    client.log_batch(run_id, tags=tags)
    for batch in metric_batches(metrics):
        client.log_batch(run_id, metrics=batch)
    if (pending / "artifacts").is_dir():
        client.log_artifacts(run_id, str(pending / "artifacts"))
    if record.get("status"):
        client.set_terminated(run_id, record["status"], record.get("end_time"))
    shutil.rmtree(pending)
    return f"{pending}: {len(metrics)} metric values -> run {run_id} in {target.uri}"


# MLflow 3's UI opens every experiment in its GenAI view (traces, token usage)
# unless the address asks for the model-training one; links keep the choice.
