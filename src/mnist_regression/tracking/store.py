"""The tracking store from the command line.

Command line::

    python -m mnist_regression.tracking.store check        # is the target usable?
    python -m mnist_regression.tracking.store mark-killed  # end runs whose process died
    python -m mnist_regression.tracking.store replay [PATH ...]  # kept data -> MLflow
    python -m mnist_regression.tracking.store ui [--port 5000]   # mlflow ui on the runs
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from pathlib import Path

from ..common.cli import main_guard
from .liveness import mark_stale_runs
from .pending import pending_folders, replay
from .session import open_session
from .target import Target, resolve_target

# MLflow 3's UI opens every experiment in its GenAI view (traces, token usage)
# unless the address asks for the model-training one; links keep the choice.
UI_VIEW = "workflowType=machine_learning"


def ui_address(host: str, port: int, experiment_id: str | None) -> str:
    page = f"experiments/{experiment_id}/runs" if experiment_id else "experiments"
    return f"http://{host}:{port}/#/{page}?{UI_VIEW}"


def serve_ui(target: Target, experiment: str, host: str, port: int) -> None:
    """Print the address of the experiment's runs, then become ``mlflow ui``."""
    found = open_session(target).find_experiment(experiment)
    if target.sqlite_path is None:
        address = urllib.parse.urlsplit(target.uri)
        print(ui_address(address.hostname, address.port or 80, found))
        return
    print(f"runs of {experiment}: {ui_address(host, port, found)}")
    print("stop with Ctrl-C", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", target.uri]
    command += ["--host", host, "--port", str(port)]
    # mlflow server starts a pool of job workers unless told not to
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, command)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_regression.tracking.store",
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
        session = open_session(target)
        if args.command == "check":
            print(f"{target.uri}: usable")
            return
        client = session.client
        ids = [e.experiment_id for e in client.search_experiments()]
        stale = mark_stale_runs(client, ids) if ids else []
        print(f"{len(stale)} runs marked KILLED" + "".join(f"\n  {r}" for r in stale))

    main_guard(run)


if __name__ == "__main__":
    main()
