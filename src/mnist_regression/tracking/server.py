"""A team's MLflow tracking server: runs in PostgreSQL, users by MLflow's basic-auth.

Command line (no password on any command line, where every local user reads it
with ``ps``, nor in git)::

    export PGPASSFILE=~/.pgpass   # host:port:database:user:password, mode 0600
    MLFLOW_AUTH_ADMIN_PASSWORD=... python -m mnist_regression.tracking.server \\
        --backend-store-uri postgresql+psycopg://mlflow@db-host/mlflow \\
        --auth-db postgresql+psycopg://mlflow@db-host/mlflow_auth \\
        --artifacts-destination /srv/mlflow/artifacts \\
        --host 0.0.0.0 --port 5000 --allowed-hosts 'localhost:*,mlflow.example.org:*'

It becomes ``mlflow server --app-name mnist-regression`` (``team_app``: MLflow's
basic-auth, with every experiment's artifacts under the server's root) with
artifacts served through the server (clients need no storage credentials) and
MLflow's job workers off.
The database URIs carry no password: PostgreSQL's client takes it from
``PGPASSFILE`` (or ``PGPASSWORD`` in the environment); a URI with one is refused.
The runs' database reaches ``mlflow server`` through its environment
(``MLFLOW_BACKEND_STORE_URI``), the basic-auth settings through a 0600 file in
memory whose path (under ``/proc`` of this command) ends with the command. The
server ends with the command too, whatever signal ends it, SIGKILL included.
Users and permissions live in ``--auth-db``; the admin, created on the first
start, adds users
(``mlflow.server.get_app_client("basic-auth", ...)``) and lets them write to the
study's experiment (``python -m mnist_regression.tracking.team``). Clients
switch with ``MLFLOW_TRACKING_URI=http://HOST:PORT`` and log in with
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``.
"""

from __future__ import annotations

import argparse
import configparser
import ctypes
import io
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from ..common.errors import ConfigError

PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
PR_SET_PDEATHSIG = 1  # prctl(2)
# MLflow's basic-auth, experiments' artifacts kept under the server's root
# (tracking.team_app, registered under mlflow.app in pyproject.toml)
APP = "mnist-regression"
# The admin user and the users' database, made once before the workers start
# (MLflow's CLI does it only for its own app name)
BOOTSTRAP = (
    "from mlflow.server.auth import bootstrap_admin_user; bootstrap_admin_user()"
)


def auth_config(auth_db: str, default_permission: str) -> tuple[Path, int]:
    """The basic-auth configuration (no secret in it) as a file in memory, and its
    descriptor: its path, under /proc of this process, is gone the moment this
    process ends, by any signal, so a kill strands no file."""
    config = configparser.ConfigParser()
    config["mlflow"] = {
        "default_permission": default_permission,
        "database_uri": auth_db,
        "admin_username": "admin",
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    text = io.StringIO()
    config.write(text)
    handle = os.memfd_create("mlflow-basic-auth.ini")
    os.fchmod(handle, 0o600)
    os.write(handle, text.getvalue().encode())
    return Path(f"/proc/{os.getpid()}/fd/{handle}"), handle


def ending_with(parent: int):
    """For the server's process, before it runs: SIGTERM when ``parent``, this
    command, ends by any signal (Linux's parent-death signal); mlflow server
    passes SIGTERM on to its uvicorn, which stops its workers."""

    def set_up() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the command ended before the signal was set
            os._exit(1)

    return set_up


def without_password(uri: str, option: str) -> str:
    """``uri`` if it carries no password; else ConfigError saying how to give it."""
    from urllib.parse import urlsplit

    if urlsplit(uri).password:
        raise ConfigError(
            f"{option} holds a password, which every local user can read in the "
            "process list: remove it from the URI and give it to PostgreSQL's "
            "client with PGPASSFILE (a 0600 file) or PGPASSWORD in the environment"
        )
    return uri


def admin_password(file: Path | None) -> str:
    if file is not None:
        try:
            password = file.read_text().strip()
        except OSError as err:
            raise ConfigError(
                f"--admin-password-file {file}: {err.strerror}; name a readable file"
            ) from None
    else:
        password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise ConfigError(
            "no admin password: set MLFLOW_AUTH_ADMIN_PASSWORD or pass "
            "--admin-password-file (a file outside git); MLflow has no default"
        )
    return password


def command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        APP,
        "--artifacts-destination",
        args.artifacts_destination,
        "--serve-artifacts",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--allowed-hosts",
        args.allowed_hosts,
        "--workers",
        str(args.workers),
    ]


def main(argv: list[str] | None = None) -> None:
    from ..common.cli import main_guard

    parser = argparse.ArgumentParser(
        prog="python -m mnist_regression.tracking.server",
        description="Start an MLflow tracking server on PostgreSQL with basic-auth.",
    )
    parser.add_argument("--backend-store-uri", required=True, help="runs' database")
    parser.add_argument("--auth-db", required=True, help="users' database")
    parser.add_argument("--artifacts-destination", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument(
        "--allowed-hosts",
        default="localhost:*,127.0.0.1:*",
        help="Host headers accepted (replaces MLflow's defaults): list localhost "
        "beside the server's own name",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--default-permission",
        default="READ",
        choices=["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"],
        help="what a user may do with others' experiments (default READ)",
    )
    parser.add_argument("--admin-password-file", type=Path)
    args = parser.parse_args(argv)

    settings: list[int] = []  # the configuration's descriptor

    def run() -> None:
        backend = without_password(args.backend_store_uri, "--backend-store-uri")
        auth_db = without_password(args.auth_db, "--auth-db")
        password = admin_password(args.admin_password_file)
        config, handle = auth_config(auth_db, args.default_permission)
        settings.append(handle)
        env = {
            **os.environ,
            PASSWORD_ENV: password,
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_BACKEND_STORE_URI": backend,
        }
        # without this, mlflow server starts a pool of job workers
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        print(f"MLflow server for http://{args.host}:{args.port}", flush=True)
        boot = subprocess.run(
            [sys.executable, "-c", BOOTSTRAP], env=env, capture_output=True, text=True
        )
        if boot.returncode != 0:
            last = (boot.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConfigError(
                f"cannot prepare the users' database or the admin ({last}): check "
                "--auth-db, its password's place (PGPASSFILE) and the admin password"
            )
        server = subprocess.Popen(
            command(args), env=env, preexec_fn=ending_with(os.getpid())
        )
        try:
            status = server.wait()
        finally:  # Ctrl-C or SIGTERM: stop the server, then clean up
            if server.poll() is None:
                server.terminate()
                server.wait()
        if status != 0:
            raise ConfigError(f"mlflow server stopped (exit status {status})")

    def clean_up() -> None:
        for handle in settings:
            os.close(handle)

    main_guard(run, cleanup=clean_up)


if __name__ == "__main__":
    main()
