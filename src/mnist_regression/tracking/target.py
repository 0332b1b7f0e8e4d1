"""The MLflow tracking target: which store, checked before a run, created safely.

``prepare_target`` checks the target before any training, within a bounded time:
a SQLite store must be a complete MLflow database in a writable folder (a new one
is created in a temporary file and renamed into place, so an interruption at any
instant leaves either no store or a whole one); a server must answer its
``/health`` endpoint. Anything else is one ``StoreError`` naming the setting.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from ..common.cli import check_stop
from ..common.errors import StoreError

LOCK_SECONDS = 10.0  # how often a wait for the store's creation lock looks again
# A server's health check: a refused or unreachable address fails within the
# connect timeout; a busy server gets the read timeout to answer
# (MNIST_REGRESSION_SERVER_WAIT seconds, default 120).
CONNECT_SECONDS = 5.0
SERVER_WAIT_VARIABLE = "MNIST_REGRESSION_SERVER_WAIT"
# MLflow's own HTTP client retries 7 times with backoff (about 4 minutes) by
# default; a run keeps what fails and retries it itself, so fewer, patient tries.
# Each is MLflow's own variable: set in the environment, it wins.
HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "120",
}
# A run checks a store this size or smaller with SQLite's quick check before it
# trains (about 7 ms per MB here); `store check` checks any store whole.
CHECKED_BYTES = 64 * 2**20
# Tables of a complete store (a subset: enough to tell a half-made one).
CORE_TABLES = {"alembic_version", "experiments", "runs", "metrics", "params", "tags"}


@dataclass(frozen=True)
class Target:
    uri: str
    setting: str  # what chose it: tracking.uri, MLFLOW_TRACKING_URI or the default

    def __post_init__(self) -> None:
        object.__setattr__(self, "uri", absolute_sqlite(self.uri))

    @property
    def sqlite_path(self) -> Path | None:
        if self.uri.startswith("sqlite:///"):
            return Path(self.uri.removeprefix("sqlite:///"))
        return None

    def fail(self, problem: str, fix: str) -> StoreError:
        return StoreError(
            f"tracking store {self.uri} ({self.setting}): {problem}; {fix}"
        )

    def refused(self, err: BaseException, experiment: str) -> StoreError | None:
        """The StoreError of a server that refused the user (401) or its writes
        to ``experiment`` (403), naming who and what lets them in; else None."""
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        code = getattr(err, "error_code", "")
        text = str(err)
        if code == "UNAUTHENTICATED" or "error code 401" in text:
            return self.fail(
                f"the server refused the login of {user or 'an anonymous client'} "
                "(401)",
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an "
                "account of the server",
            )
        if code == "PERMISSION_DENIED" or "error code 403" in text:
            return self.fail(
                f"user {user!r} may not write runs to the experiment {experiment!r} "
                "(403: another user created it, and the server grants others READ)",
                "an admin of the server adds the user to the experiment's editors "
                "with `python -m mnist_regression.tracking.team --tracking-uri "
                f"{self.uri} --experiment {experiment} {user}`, or log to an "
                "experiment of your own with tracking.experiment=NAME",
            )
        return None


def absolute_sqlite(uri: str) -> str:
    """A relative SQLite URI (``sqlite:///mlflow.db``) as MLflow reads it,
    relative to the working folder, made absolute: the same file for every
    process and check that takes it."""
    if not uri.startswith("sqlite:///"):
        return uri
    path, _, query = uri.removeprefix("sqlite:///").partition("?")
    if not path or path.startswith("/") or path == ":memory:":
        return uri
    absolute = f"sqlite:///{(Path.cwd() / path).resolve()}"
    return f"{absolute}?{query}" if query else absolute


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
    """``mlflow.db`` in the project root, where plain ``mlflow ui``, ``mlflow runs
    list`` and ``mlflow.pyfunc.load_model`` look when no tracking URI is set
    (MLflow 3's default ``sqlite:///mlflow.db``), artifacts in ``mlruns/``."""
    db = project_root() / "mlflow.db"
    return Target(f"sqlite:///{db}", "the default store, tracking.uri unset")


# Where the default store lived before it moved to MLflow's default place.
OLD_DEFAULT = Path("mlruns") / "mlflow.db"


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
    check_scheme(target)
    if target.sqlite_path is not None:
        ensure_sqlite_store(target, target.sqlite_path)
    elif target.uri.startswith(("http://", "https://")):
        check_server(target)
    elif target.uri.startswith(DATABASES):
        check_database(target)


def check_scheme(target: Target) -> None:
    """A URI whose scheme MLflow has no store for fails here, before any work."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    try:
        _tracking_store_registry.get_store_builder(target.uri)
    except Exception:  # MLflow's "unsupported URI" exceptions
        scheme = target.uri.split(":", 1)[0]
        raise target.fail(
            f"MLflow has no tracking store for the scheme {scheme!r}",
            "use sqlite:///<file>, http(s)://<host>:<port> or "
            "postgresql://<user>@<host>/<database>",
        ) from None


def same_store(a: Target, b: Target) -> bool:
    """Whether two targets name the same store (one SQLite file, or one server
    or database at the same address)."""
    if a.sqlite_path is not None and b.sqlite_path is not None:
        return a.sqlite_path.resolve() == b.sqlite_path.resolve()
    from urllib.parse import urlsplit

    left, right = urlsplit(a.uri.rstrip("/")), urlsplit(b.uri.rstrip("/"))
    return (left.scheme, left.hostname, left.port, left.path) == (
        right.scheme,
        right.hostname,
        right.port,
        right.path,
    )


# --- SQLite -------------------------------------------------------------------


def ensure_sqlite_store(target: Target, db: Path) -> None:
    folder = db.parent
    if target.setting.startswith("the default store"):
        adopt_old_default(db)
    fix = "point tracking.uri or MLFLOW_TRACKING_URI at a writable folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with closing(_probe(folder)):
            pass
    except OSError as err:
        raise target.fail(f"cannot write in {folder} ({err.strerror})", fix) from None
    # An flock: the system releases it when its holder dies, so a held lock
    # means a living process is creating or repairing the store: wait for it.
    lock = FileLock(f"{db}.lock")
    waited = 0.0
    while True:
        try:
            lock.acquire(timeout=LOCK_SECONDS)
            break
        except Timeout:
            check_stop()
            waited += LOCK_SECONDS
            if waited == LOCK_SECONDS:
                print(
                    f"note: another process is creating {db} (it holds {db}.lock); "
                    "waiting for it to finish",
                    file=sys.stderr,
                )
    try:
        _ensure_locked(target, db)
    finally:
        lock.release()


def adopt_old_default(db: Path) -> None:
    """Move a store made by an older version (``mlruns/mlflow.db``) to ``db``,
    its runs' artifacts staying where they are (their locations are absolute)."""
    old = db.parent / OLD_DEFAULT
    if db.exists() or not old.exists():
        return
    with FileLock(f"{old}.lock"):  # an flock: released if its holder dies
        if old.exists() and not db.exists():
            os.replace(old, db)
            print(f"note: moved the study's store {old} to {db}", file=sys.stderr)


def _probe(folder: Path):
    return tempfile.TemporaryFile(dir=folder, prefix=".write-probe-")


def _ensure_locked(target: Target, db: Path) -> None:
    for leftover in db.parent.glob(f".{db.name}.creating-*"):
        leftover.unlink(missing_ok=True)  # an interrupted creation; we hold the lock
    state, detail, n_runs = inspect_sqlite(db)
    if state == "complete":
        if not os.access(db, os.W_OK):
            raise target.fail(
                f"cannot write {db} (the file is read-only or immutable)",
                "make it writable (chmod u+w, chattr -i), or point tracking.uri "
                "elsewhere",
            )
        if db.stat().st_size <= CHECKED_BYTES:
            check_integrity(target, db, quick=True)
        return
    if state == "not a database":
        raise target.fail(
            f"{db} is not an SQLite database ({detail})",
            "move the file aside, or point tracking.uri elsewhere",
        )
    if state == "foreign":
        raise target.fail(
            f"{db} is an SQLite database of another program (tables {detail})",
            "point tracking.uri at a new file, e.g. sqlite:///runs.db",
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


def check_integrity(target: Target, db: Path, quick: bool = False) -> None:
    """SQLite's integrity check (``quick``: its quick check, which reads every
    page but skips the indexes' contents); StoreError on a damaged store."""
    pragma = "quick_check" if quick else "integrity_check"
    try:
        with closing(
            sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=LOCK_SECONDS)
        ) as con:
            verdict = con.execute(f"PRAGMA {pragma}(1)").fetchone()[0]
    except sqlite3.DatabaseError as err:
        if "locked" in str(err):
            return  # in use by another process: its writer will see
        verdict = str(err)
    if verdict != "ok":
        verdict = " ".join(verdict.replace("***", "").split())
        raise target.fail(
            f"{db} is damaged (SQLite's integrity check: {verdict})",
            "record the runs into a new store from their folders with `python -m "
            "mnist_regression.tracking.store --uri sqlite:///NEW.db sync results "
            "multirun`, or restore a copy of the file",
        )


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
    """``mlruns/`` beside the store file, as MLflow's own default layout."""
    return (db.parent / "mlruns").as_uri()


# --- servers --------------------------------------------------------------------


def check_server(target: Target) -> None:
    import requests

    url = target.uri.rstrip("/") + "/health"
    fix = "start the server, or point tracking.uri or MLFLOW_TRACKING_URI elsewhere"
    try:
        wait = float(os.environ.get(SERVER_WAIT_VARIABLE, "120"))
    except ValueError:
        raise target.fail(
            f"{SERVER_WAIT_VARIABLE}={os.environ[SERVER_WAIT_VARIABLE]!r} is not "
            "a number of seconds",
            f"set {SERVER_WAIT_VARIABLE} to the seconds a busy server may take",
        ) from None
    try:
        response = requests.get(url, timeout=(CONNECT_SECONDS, wait))
    except requests.ConnectionError as err:
        reason = "connection refused" if "refused" in str(err) else "unreachable"
        raise target.fail(f"the server does not answer ({reason})", fix) from None
    except requests.Timeout:
        raise target.fail(
            f"the server did not answer within {wait:g} s ({SERVER_WAIT_VARIABLE})",
            fix,
        ) from None
    except requests.RequestException as err:
        raise target.fail(f"cannot reach the server ({err})", fix) from None
    if response.status_code != 200:
        raise target.fail(
            f"{url} answered HTTP {response.status_code}",
            "check that the address is an MLflow tracking server",
        )


DATABASES = ("postgresql", "mysql", "mssql")


def check_database(target: Target) -> None:
    """A database store answers a connection within CONNECT_SECONDS."""
    import sqlalchemy

    fix = "start it, or point tracking.uri or MLFLOW_TRACKING_URI elsewhere"
    if target.setting.startswith("--"):
        fix = f"start it, or name another store with {target.setting}"
    postgres = target.uri.startswith("postgresql")
    timeout = {"connect_timeout": int(CONNECT_SECONDS)} if postgres else {}
    engine = None
    try:
        engine = sqlalchemy.create_engine(target.uri, connect_args=timeout)
        with engine.connect():
            pass
    except ModuleNotFoundError as err:
        raise target.fail(
            f"its database driver ({err.name}) is not installed",
            "install the server's extra: `uv sync --extra server`",
        ) from None
    except Exception as err:  # SQLAlchemy's OperationalError and its drivers'
        reason = describe_failure(getattr(err, "orig", None) or err)
        raise target.fail(f"the database does not answer ({reason})", fix) from None
    finally:
        if engine is not None:
            engine.dispose()


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
