"""The MLflow tracking target: checked before a run, created safely, kept honest.

- ``prepare_target`` checks the target before any training, within a bounded time:
  a SQLite store must be a complete MLflow database in a writable folder (a new one
  is created in a temporary file and renamed into place, so an interruption at any
  instant leaves either no store or a whole one); a server must answer its
  ``/health`` endpoint. Anything else is one ``StoreError`` naming the setting.
- Runs carry their host and process id; ``mark_stale_runs`` ends as KILLED the
  RUNNING runs of this host whose process is gone (SIGKILL, power loss).
- What a run could not write to the store is kept in ``mlflow-pending/`` beside its
  outputs; ``replay`` writes it into MLflow later.

Command line::

    python -m mnist_regression.store check              # is the target usable?
    python -m mnist_regression.store mark-killed        # end runs whose process died
    python -m mnist_regression.store replay [PATH ...]  # write kept data into MLflow
    python -m mnist_regression.store ui [--port 5000]   # mlflow ui, opened on the runs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .cli import check_stop
from .errors import StoreError

LOCK_SECONDS = 10.0  # longest wait for the store's creation lock
HEALTH_SECONDS = 5.0  # connect and read timeouts of a server's health check
PENDING = "mlflow-pending"  # folder of what could not be written, beside the outputs
# MLflow's own HTTP client retries 7 times with backoff (about 4 minutes) by
# default; the run keeps what fails and retries it itself.
HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
# Tables of a complete store (a subset: enough to tell a half-made one).
CORE_TABLES = {"alembic_version", "experiments", "runs", "metrics", "params", "tags"}


@dataclass(frozen=True)
class Target:
    uri: str
    setting: str  # what chose it: tracking.uri, MLFLOW_TRACKING_URI or the default

    @property
    def sqlite_path(self) -> Path | None:
        if self.uri.startswith("sqlite:///"):
            return Path(self.uri.removeprefix("sqlite:///"))
        return None

    def fail(self, problem: str, fix: str) -> StoreError:
        return StoreError(
            f"tracking store {self.uri} ({self.setting}): {problem}; {fix}"
        )


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def resolve_target(uri: str | None) -> Target:
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else the project's store."""
    if uri:
        return Target(str(uri), "tracking.uri")
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return Target(os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI")
    return default_target()


def default_target() -> Target:
    db = project_root() / "mlruns" / "mlflow.db"
    return Target(f"sqlite:///{db}", "the default store, tracking.uri unset")


def quiet_mlflow_logs() -> None:
    """MLflow logs each failed store call with its stack and each migration step;
    a run reports failures itself, in one line."""
    for name in ("mlflow.store.db.utils", "alembic", "mlflow.store.db.db_types"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # and each retry of a server that went away, with the address and the reason
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    # and each logged model's steps (uv.lock found and copied, example validated)
    for name in ("mlflow.utils.uv_utils", "mlflow.pyfunc", "mlflow.models.model"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # and each download of a run's artifacts, even of none
    logging.getLogger("mlflow.store.artifact.artifact_repo").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def prepare_target(target: Target) -> None:
    """Make sure runs can be recorded at ``target``; raise StoreError if not."""
    for name, value in HTTP_ENV.items():
        os.environ.setdefault(name, value)
    quiet_mlflow_logs()
    if target.sqlite_path is not None:
        ensure_sqlite_store(target, target.sqlite_path)
    elif target.uri.startswith(("http://", "https://")):
        check_server(target)


# --- SQLite -------------------------------------------------------------------


def ensure_sqlite_store(target: Target, db: Path) -> None:
    folder = db.parent
    fix = "point tracking.uri or MLFLOW_TRACKING_URI at a writable folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with closing(_probe(folder)):
            pass
    except OSError as err:
        raise target.fail(f"cannot write in {folder} ({err.strerror})", fix) from None
    lock = FileLock(f"{db}.lock", timeout=LOCK_SECONDS)
    try:
        with lock:
            _ensure_locked(target, db)
    except Timeout:
        raise target.fail(
            f"another process has held {db}.lock for {LOCK_SECONDS:g} s",
            "wait for it to finish, or remove the lock file if no run is active",
        ) from None


def _probe(folder: Path):
    return tempfile.TemporaryFile(dir=folder, prefix=".write-probe-")


def _ensure_locked(target: Target, db: Path) -> None:
    for leftover in db.parent.glob(f".{db.name}.creating-*"):
        leftover.unlink(missing_ok=True)  # an interrupted creation; we hold the lock
    state, detail, n_runs = inspect_sqlite(db)
    if state == "complete":
        return
    if state == "not a database":
        raise target.fail(
            f"{db} is not an SQLite database ({detail})",
            "move the file aside, or point tracking.uri elsewhere",
        )
    if state == "foreign":
        raise target.fail(
            f"{db} is an SQLite database of another program (tables {detail})",
            "point tracking.uri at a new file, e.g. sqlite:///mlruns/mlflow.db",
        )
    if state == "half-made":
        if n_runs:
            raise target.fail(
                f"{db} was left half-migrated ({detail}) and holds {n_runs} runs",
                "back it up, drop the tables named _alembic_tmp_*, then run "
                f"`mlflow db upgrade sqlite:///{db}`",
            )
        aside = db.with_name(f"{db.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(db, aside)
        print(
            f"note: {db} was a half-created MLflow store ({detail}), with no runs; "
            f"moved it to {aside.name} and created a new one",
            file=sys.stderr,
        )
    _create_sqlite_store(target, db)


def inspect_sqlite(db: Path) -> tuple[str, str, int]:
    """(state, detail, number of runs): missing, empty, complete, half-made, ..."""
    if not db.exists():
        return "missing", "", 0
    try:
        with closing(
            sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=LOCK_SECONDS)
        ) as con:
            tables = {
                row[0]
                for row in con.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                )
            }
            version = None
            if "alembic_version" in tables:
                row = con.execute("SELECT version_num FROM alembic_version").fetchone()
                version = row[0] if row else None
            runs = 0
            if "runs" in tables:
                runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.DatabaseError as err:
        if "locked" in str(err):
            return "complete", "", 0  # in use by another process: a store
        return "not a database", str(err), 0
    if not tables:
        return "missing", "", 0  # an empty file: nothing to keep
    leftovers = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if leftovers:
        return (
            "half-made",
            f"table {leftovers[0]} left by an interrupted migration",
            runs,
        )
    if not tables & {"alembic_version", "experiments"}:
        return "foreign", ", ".join(sorted(tables)[:5]), 0
    missing = CORE_TABLES - tables
    if missing or version is None:
        gap = f"tables {', '.join(sorted(missing))} missing" if missing else ""
        return "half-made", gap or "no schema version recorded", runs
    return "complete", "", runs


def _create_sqlite_store(target: Target, db: Path) -> None:
    """Create and migrate a store in a temporary file, then rename it into place."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
    try:
        store = SqlAlchemyStore(f"sqlite:///{tmp}", artifact_root(db))
        store.engine.dispose()
        os.replace(tmp, db)
    except Exception as err:  # MLflow's, SQLAlchemy's, the file system's
        # an interrupt that a library's cleanup replaced by an error of its own
        check_stop()
        raise target.fail(f"cannot create {db} ({err})", "check the folder") from None
    finally:
        for path in (tmp, Path(f"{tmp}-journal")):
            path.unlink(missing_ok=True)


def artifact_root(db: Path) -> str:
    return (db.parent / "artifacts").as_uri()


# --- servers --------------------------------------------------------------------


def check_server(target: Target) -> None:
    import requests

    url = target.uri.rstrip("/") + "/health"
    fix = "start the server, or point tracking.uri or MLFLOW_TRACKING_URI elsewhere"
    try:
        response = requests.get(url, timeout=(HEALTH_SECONDS, HEALTH_SECONDS))
    except requests.ConnectionError as err:
        reason = "connection refused" if "refused" in str(err) else "unreachable"
        raise target.fail(f"the server does not answer ({reason})", fix) from None
    except requests.Timeout:
        raise target.fail(
            f"the server did not answer within {HEALTH_SECONDS:g} s", fix
        ) from None
    except requests.RequestException as err:
        raise target.fail(f"cannot reach the server ({err})", fix) from None
    if response.status_code != 200:
        raise target.fail(
            f"{url} answered HTTP {response.status_code}",
            "check that the address is an MLflow tracking server",
        )


def describe_failure(err: BaseException) -> str:
    """One line for a failed store call: the cause, without MLflow's stack."""
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    if "database is locked" in str(err):
        first = "database is locked"
    refused = "Connection refused" in str(err) or "NewConnectionError" in str(err)
    if refused and "API request to " in first:
        # MLflow's text: the endpoint, then urllib3's retry report
        endpoint = first.split("API request to ", 1)[1].split(" ", 1)[0]
        return f"the server does not answer (connection refused) at {endpoint}"
    return f"{type(err).__name__}: {first[:300]}"


# --- process liveness -----------------------------------------------------------


def process_tags() -> dict[str, str]:
    import psutil

    me = psutil.Process()
    tags = {
        "host": socket.gethostname(),
        "pid": str(me.pid),
        "pid_started": f"{me.create_time():.2f}",
    }
    # a SLURM job (hydra/launcher=slurm) names its job and array task
    for variable in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        if os.environ.get(variable):
            tags[f"slurm.{variable.removeprefix('SLURM_').lower()}"] = os.environ[
                variable
            ]
    return tags


def process_alive(pid: int, started: str | None) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return started is None or f"{process.create_time():.2f}" == started
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def mark_stale_runs(client, experiment_ids: Iterable[str]) -> list[str]:
    """End as KILLED the RUNNING runs of this host whose process no longer exists."""
    host = socket.gethostname()
    stale = []
    for run in client.search_runs(
        list(experiment_ids),
        filter_string=f"attributes.status = 'RUNNING' and tags.host = '{host}'",
        max_results=1000,
    ):
        tags = run.data.tags
        if not tags.get("pid", "").isdigit():
            continue
        if process_alive(int(tags["pid"]), tags.get("pid_started")):
            continue
        client.set_tag(
            run.info.run_id,
            "failure_reason",
            f"process {tags['pid']} on {host} ended without closing the run "
            "(killed, or the machine stopped)",
        )
        client.set_terminated(run.info.run_id, "KILLED")
        stale.append(run.info.run_id)
    return stale


# --- kept data and its replay ---------------------------------------------------


def keep_pending(directory: Path, record: Mapping[str, Any], artifacts: Path | None):
    """Write what could not be sent to the store into ``directory/mlflow-pending``."""
    from .io import save_json

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


def log_params(client, run_id: str, params: Mapping[str, str]) -> None:
    """Parameters in batches of 100, MLflow's limit per call."""
    from mlflow.entities import Param

    batch = [Param(k, v[:6000]) for k, v in params.items()]
    for start in range(0, len(batch), 100):
        client.log_batch(run_id, params=batch[start : start + 100])


def pending_folders(paths: Iterable[Path]) -> list[Path]:
    found = []
    for path in paths:
        if (path / "run.json").is_file() and path.name == PENDING:
            found.append(path)
        elif path.is_dir():
            found += sorted(p.parent for p in path.rglob(f"{PENDING}/run.json"))
    return found


def replay(pending: Path, uri: str | None = None) -> str:
    """Write one ``mlflow-pending`` folder into its store; remove it on success."""
    from mlflow.entities import Metric, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    record = json.loads((pending / "run.json").read_text())
    target = (
        Target(uri, "--uri") if uri else Target(record["uri"], "recorded in run.json")
    )
    prepare_target(target)
    client = MlflowClient(target.uri)
    run_id = record.get("run_id")
    try:
        if run_id:
            client.get_run(run_id)
    except MlflowException:
        run_id = None  # replayed into another store: a new run carries everything
    if not run_id:
        from .tracking import experiment_id

        run_id = client.create_run(
            experiment_id(client, target, record["experiment"]),
            run_name=record["run_name"],
            tags=record.get("tags", {}),
        ).info.run_id
        log_params(client, run_id, record.get("params", {}))
    tags = [RunTag(k, str(v)) for k, v in record.get("late_tags", {}).items()]
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in record.get("metrics", [])]
    client.log_batch(run_id, tags=tags)
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    if (pending / "artifacts").is_dir():
        client.log_artifacts(run_id, str(pending / "artifacts"))
    if record.get("status"):
        client.set_terminated(run_id, record["status"], record.get("end_time"))
    shutil.rmtree(pending)
    return f"{pending}: {len(metrics)} metric values -> run {run_id} in {target.uri}"


# MLflow 3's UI opens every experiment in its GenAI view (traces, token usage)
# unless the address asks for the model-training one; links keep the choice.
UI_VIEW = "workflowType=machine_learning"


def ui_address(host: str, port: int, experiment_id: str | None) -> str:
    page = f"experiments/{experiment_id}/runs" if experiment_id else "experiments"
    return f"http://{host}:{port}/#/{page}?{UI_VIEW}"


def serve_ui(target: Target, experiment: str, host: str, port: int) -> None:
    """Print the address of the experiment's runs, then become ``mlflow ui``."""
    from mlflow.tracking import MlflowClient

    prepare_target(target)
    found = MlflowClient(target.uri).get_experiment_by_name(experiment)
    if target.sqlite_path is None:
        address = urllib.parse.urlsplit(target.uri)
        print(
            ui_address(
                address.hostname, address.port or 80, found and found.experiment_id
            )
        )
        return
    print(
        f"runs of {experiment}: {ui_address(host, port, found and found.experiment_id)}"
    )
    print("stop with Ctrl-C", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", target.uri]
    command += ["--host", host, "--port", str(port)]
    # mlflow server starts a pool of job workers unless told not to
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, command)


def main(argv: list[str] | None = None) -> None:
    from .cli import main_guard

    parser = argparse.ArgumentParser(
        prog="python -m mnist_regression.store",
        description="Check the MLflow tracking target, end runs whose process died, "
        "and write kept tracking data into MLflow.",
    )
    parser.add_argument(
        "--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else the project's)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check that runs can be recorded")
    sub.add_parser("mark-killed", help="end as KILLED the runs whose process is gone")
    play = sub.add_parser("replay", help="write mlflow-pending/ folders into MLflow")
    play.add_argument("paths", nargs="*", type=Path, help="folders to search")
    show = sub.add_parser(
        "ui", help="start `mlflow ui` opened on the experiment's runs"
    )
    show.add_argument("--experiment", default="mnist-regression")
    show.add_argument("--host", default="127.0.0.1")
    show.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)

    def run() -> None:
        if args.command == "replay":
            roots = args.paths or [Path(p) for p in ("outputs", "multirun", "results")]
            folders = pending_folders(p for p in roots if p.exists())
            if not folders:
                print("nothing to replay: no mlflow-pending folder found")
            for folder in folders:
                print(replay(folder, args.uri))
            return
        target = resolve_target(args.uri)
        if args.command == "ui":
            serve_ui(target, args.experiment, args.host, args.port)
            return
        prepare_target(target)
        if args.command == "check":
            print(f"{target.uri}: usable")
            return
        from mlflow.tracking import MlflowClient

        client = MlflowClient(target.uri)
        ids = [e.experiment_id for e in client.search_experiments()]
        stale = mark_stale_runs(client, ids) if ids else []
        print(f"{len(stale)} runs marked KILLED" + "".join(f"\n  {r}" for r in stale))

    main_guard(run)


if __name__ == "__main__":
    main()
