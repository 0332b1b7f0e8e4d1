"""The tracking store from the command line.

Command line::

    python -m mnist_regression.tracking.store check          # is the target usable?
    python -m mnist_regression.tracking.store sync PATH ...  # job folders -> MLflow
    python -m mnist_regression.tracking.store ui [--port 5000]   # mlflow ui on the runs
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from ..common.cli import main_guard
from ..common.errors import DataError, UserError
from ..common.record import METRICS_FILE, RUN_FILE, SWEEP_FILE, read_json
from .index import Index, Indexed, close_parent, run_folders
from .liveness import gone_from_here
from .provenance import study_experiment
from .session import open_session
from .target import Target, check_integrity, resolve_target

# MLflow 3's UI opens every experiment in its GenAI view (traces, token usage)
# unless the address asks for the model-training one; links keep the choice.
UI_VIEW = "workflowType=machine_learning"


def ui_address(host: str, port: int, experiment_id: str | None) -> str:
    page = f"experiments/{experiment_id}/runs" if experiment_id else "experiments"
    return f"http://{host}:{port}/#/{page}?{UI_VIEW}"


def serve_ui(target: Target, experiment: str, host: str, port: int) -> None:
    """Start ``mlflow ui`` (one worker: one user) on the store; print the address
    of the experiment's runs once the server answers, then serve until stopped."""
    found = open_session(target).find_experiment(experiment)
    if target.sqlite_path is None:
        address = urllib.parse.urlsplit(target.uri)
        print(ui_address(address.hostname, address.port or 80, found))
        return
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", target.uri]
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    # mlflow server starts a pool of job workers unless told not to
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(
        f"starting mlflow ui on {target.uri} (up to a minute on a busy machine)",
        flush=True,
    )
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        while not answers(f"http://{host}:{port}/health"):
            if server.poll() is not None:
                raise UserError(
                    f"mlflow ui stopped (exit status {server.returncode}) before it "
                    f"answered on {host}:{port}; if the port is in use, pick "
                    "another with --port"
                )
            time.sleep(0.2)
        print(f"runs of {experiment}: {ui_address(host, port, found)}")
        print("stop with Ctrl-C", flush=True)
        if server.wait() != 0:
            raise UserError(f"mlflow ui stopped (exit status {server.returncode})")
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()


def answers(url: str) -> bool:
    """Whether ``url`` answers HTTP 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:  # refused, reset or timed out: not up yet
        return False


def sync_folders(target: Target, paths: list[Path], experiment: str | None):
    """Index the job folders at or under ``paths`` (``index``), each into its own
    experiment (``tracking.experiment`` of its run) or ``experiment``."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"no such folder: {', '.join(missing)}")
    folders = run_folders(paths)
    if not folders:
        where = ", ".join(map(str, paths))
        raise DataError(f"no job folder (one with {RUN_FILE}) at or under {where}")
    session = open_session(target)
    done = Indexed()
    by_experiment: dict[str, list[Path]] = {}
    for folder in folders:
        record = read_json(folder / RUN_FILE) or {}
        own = record.get("params", {}).get("tracking", {}).get("experiment")
        by_experiment.setdefault(experiment or own or study_experiment(), []).append(
            folder
        )
    for name, group in by_experiment.items():
        index = Index(session.client, session.experiment_id(name))
        index.index(group, done)
        close_sweeps(index, group)
    return done


def close_sweeps(index: Index, folders: list[Path]) -> None:
    """End the parent runs a recorder left open (killed, or its store failed)
    once the sweep's process is gone: FINISHED where every job finished or
    failed, KILLED where one was stopped or never wrote its ``metrics.json``."""
    sweeps = {f.parent for f in folders if (f.parent / SWEEP_FILE).is_file()}
    for jobs_dir in sorted(sweeps):
        sweep = read_json(jobs_dir / SWEEP_FILE) or {}
        parent = index.find(sweep.get("run_key", ""))
        if parent is None or parent.info.status != "RUNNING":
            continue
        tags = sweep.get("tags", {})
        here = tags.get("host") == socket.gethostname()
        if here and not gone_from_here(tags):
            continue  # its recorder is still at work
        statuses = [
            (read_json(job / METRICS_FILE) or {}).get("status")
            for job in run_folders([jobs_dir])
        ]
        if None in statuses and not here:
            continue  # jobs elsewhere may still be training
        done = all(status in ("FINISHED", "FAILED") for status in statuses)
        status = "FINISHED" if done else "KILLED"
        close_parent(index.client, parent.info.run_id, status, None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_regression.tracking.store",
        description="Check the MLflow tracking target, index job folders into it, "
        "and open mlflow ui on it.",
    )
    parser.add_argument(
        "--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else the project's)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check that runs can be recorded")
    sync = sub.add_parser(
        "sync",
        help="index job folders into MLflow: each run once, completed from its folder",
    )
    sync.add_argument(
        "paths", nargs="+", type=Path, help="job folders, or folders to search"
    )
    sync.add_argument(
        "--experiment",
        help="the experiment to index into (default: each folder's own)",
    )
    show = sub.add_parser(
        "ui", help="start `mlflow ui` opened on the experiment's runs"
    )
    show.add_argument("--experiment", default=study_experiment())
    show.add_argument("--host", default="127.0.0.1")
    show.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)

    def run() -> None:
        target = resolve_target(args.uri)
        if args.command == "sync":
            done = sync_folders(target, args.paths, args.experiment)
            print(done.summary())
            for folder, reason in done.unreadable:
                print(
                    f"error: {folder}: {reason}; move it aside, or restore it, "
                    "and sync again",
                    file=sys.stderr,
                )
            if done.unreadable:
                raise SystemExit(1)
            return
        if args.command == "ui":
            serve_ui(target, args.experiment, args.host, args.port)
            return
        if target.sqlite_path is not None and target.sqlite_path.is_file():
            check_integrity(target, target.sqlite_path)
        open_session(target)
        print(f"{target.uri}: usable")  # check

    main_guard(run)


if __name__ == "__main__":
    main()
