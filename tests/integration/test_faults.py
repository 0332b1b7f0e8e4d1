"""Fault injection: real processes, a real SQLite store, real signals.

Each test breaks something a user can break (an interrupted first run, a locked or
unreachable store, signals, concurrent runs, damaged data) and checks what
survives: the run's outputs, every metric point, a clear one-line message, and a
store that still works.
"""

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from mlflow.tracking import MlflowClient

from mnist_regression.common.record import read_rows
from mnist_regression.data.download import MNIST_SHA256

from .conftest import (  # noqa: F401
    BIN,
    HANG,
    LONG,
    REPO_ROOT,
    run,
    runs_of,
    start_dvc_repro,
    store_contents,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


class Stderr:
    """Collect a process's stderr in the background, so a test can wait on it."""

    def __init__(self, process: subprocess.Popen):
        self.text = ""
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process) -> None:
        for chunk in iter(lambda: process.stderr.read(1), ""):
            self.text += chunk

    def join(self) -> str:
        self.thread.join(HANG)  # ends with the pipe
        return self.text


def epochs_shown(progress: str) -> int:
    """The last epoch count of a tqdm progress bar (its 'n/total')."""
    counts = re.findall(r"(\d+)/\d+ \[", progress)
    return int(counts[-1]) if counts else 0


def store_is_whole(db: Path) -> bool:
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    return "runs" in tables and not any(t.startswith("_alembic_tmp_") for t in tables)


# --- 1. the store -----------------------------------------------------------------


def _creation_moment(db: Path, moment: str):
    folder = db.parent
    if moment == "lock":
        return lambda: Path(f"{db}.lock").exists()
    return lambda: any(folder.glob(f".{db.name}.creating-*"))


@pytest.mark.parametrize(
    ("moment", "delay", "signum"),
    [
        ("lock", 0.0, signal.SIGINT),
        ("creating", 0.0, signal.SIGINT),
        ("creating", 0.15, signal.SIGTERM),
        ("creating", 0.4, signal.SIGINT),
        ("creating", 0.8, signal.SIGTERM),
    ],
)
def test_an_interrupted_first_run_never_breaks_the_store(app, moment, delay, signum):
    """Interrupts swept across the creation of a new store: the next run works."""
    process = app.start("optimizer.max_epochs=3", stderr=subprocess.PIPE)
    wait_for(_creation_moment(app.db, moment), f"store creation ({moment})", process)
    time.sleep(delay)  # a point in the migration, after the condition above
    process.send_signal(signum)
    _, err = process.communicate(timeout=HANG)
    assert process.returncode in (0, 128 + signum), err
    no_traceback(err)
    again = app.launch("optimizer.max_epochs=3")
    assert "best epoch" in again.stdout
    assert store_is_whole(app.db)
    assert not list(app.db.parent.glob(f".{app.db.name}.creating-*"))


def test_a_half_made_store_without_runs_is_rebuilt_and_said(app):
    app.db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(app.db) as con:  # what an interrupted migration leaves
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        con.execute("CREATE TABLE _alembic_tmp_latest_metrics (x INTEGER)")
    result = app.launch("optimizer.max_epochs=2")
    assert "half-created MLflow store" in result.stderr
    assert "_alembic_tmp_latest_metrics" in result.stderr
    assert store_is_whole(app.db)
    assert list(app.db.parent.glob("mlflow.db.broken-*"))  # kept aside, not deleted


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda db: db.write_bytes(b"\x00garbage" * 1000), "is not an SQLite database"),
        (
            lambda db: sqlite3.connect(db).execute("CREATE TABLE songs (title TEXT)"),
            "an SQLite database of another program",
        ),
        ("half-made with runs", "half-migrated"),
    ],
)
def test_a_broken_or_foreign_store_gets_one_clear_line(app, make, message):
    app.db.parent.mkdir(parents=True, exist_ok=True)
    if make == "half-made with runs":
        app.launch("optimizer.max_epochs=1")
        with sqlite3.connect(app.db) as con:
            con.execute("CREATE TABLE _alembic_tmp_metrics (x INTEGER)")
    else:
        make(app.db)
    before = app.db.read_bytes()
    result = app.launch("optimizer.max_epochs=1", check=False)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert message in line and "tracking.uri" in line
    assert app.db.read_bytes() == before  # the user's file is left alone


@pytest.mark.parametrize(
    ("uri", "env", "message"),
    [
        ("http://127.0.0.1:1", False, "does not answer (connection refused)"),
        ("sqlite:////proc/mnist/x.db", False, "cannot write in /proc/mnist"),
        ("http://127.0.0.1:1", True, "does not answer"),
        ("silent-server", False, "did not answer within"),
        ("garbage://x", False, "no tracking store for the scheme 'garbage'"),
    ],
)
def test_an_unusable_tracking_target_fails_before_training_naming_the_setting(
    app, uri, env, message, tmp_path
):
    listener = None
    if uri == "silent-server":  # accepts connections, never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
    overrides = ["optimizer.max_epochs=2"]
    command = app.command(*overrides)
    command = [c for c in command if not c.startswith("tracking.uri=")]
    environ = {**os.environ, "MNIST_REGRESSION_SERVER_WAIT": "2"}  # silent-server
    if env:
        environ["MLFLOW_TRACKING_URI"] = uri
    else:
        command.append(f"tracking.uri={uri}")
    result = subprocess.run(command, capture_output=True, text=True, env=environ)
    if listener:
        listener.close()
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert ("MLFLOW_TRACKING_URI" if env else "tracking.uri") in line
    # checked before any training: no epoch ran, no output was written
    assert not list(tmp_path.rglob("history.csv"))
    assert "epoch" not in result.stderr


@pytest.mark.parametrize(
    ("to", "extra", "message"),
    [
        ("same", [], "name the same store: there is nothing to copy"),
        ("garbage://x", [], "no tracking store for the scheme 'garbage'"),
        # the source is checked first: nothing is created in the target
        ("new", ["--experiment", "nosuch"], "no experiment 'nosuch'; name it with"),
        # a refused database: within seconds, before `copying`
        ("postgresql://u@127.0.0.1:1/db", [], "the database does not answer"),
        ("postgresql://u:secret@127.0.0.1:1/db", [], "--to holds a password"),
        ("deleted", [], "mlflow experiments restore --experiment-id"),
    ],
)
def test_a_migration_to_no_other_store_copies_nothing(
    app, tmp_path, to, extra, message
):
    """The same store again, a scheme MLflow cannot open, an experiment the
    source lacks, a database that does not answer, a password in the URI, an
    experiment deleted in the target: one line before anything is copied, the
    source keeps exactly its runs, and no new store is left behind."""
    app.launch("optimizer.max_epochs=1")
    before = len(app.runs())
    target = {"same": app.uri, "new": f"sqlite:///{tmp_path / 'new.db'}"}.get(to, to)
    if to == "deleted":
        target = f"sqlite:///{tmp_path / 'deleted.db'}"
        client = MlflowClient(target)
        client.delete_experiment(client.create_experiment("mnist-regression"))
    result = subprocess.run(
        [sys.executable, "-m", "mnist_regression.tracking.migrate"]
        + ["--from", app.uri, "--to", target, *extra],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert message in line and "secret" not in line
    assert "copying" not in result.stdout
    assert len(app.runs()) == before
    assert not (tmp_path / "new.db").exists()


def test_a_yaml_syntax_error_is_one_line_with_file_and_line(repo_copy):
    """In conf/ (the check `dvc repro` runs first) and in params.yaml (the
    training stages' primary config): the file, the line, the problem."""
    conf = repo_copy / "conf" / "optimizer" / "sgd.yaml"
    conf.write_text(conf.read_text() + "extra: [0.1\n")
    params = repo_copy / "params.yaml"
    params.write_text(params.read_text() + "extra: {1\n")
    for command, broken in (
        (["mnist_regression.params", "--check"], conf),
        (
            ["mnist_regression.train", "--config-dir", ".", "--config-name", "params"],
            params,
        ),
    ):
        result = subprocess.run(
            [sys.executable, "-m", *command],
            cwd=repo_copy,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and f"{broken.name}, line " in line
        assert str(broken.relative_to(repo_copy)) in line and "fix the YAML" in line


def test_a_wrong_value_of_an_experiment_stops_before_any_training(repo_copy):
    """`dvc exp run -S optimizer.lr=-1`: the pipeline's first stage checks
    params.yaml as the jobs will, so no training stage starts."""
    result = subprocess.run(
        [str(BIN / "dvc"), "exp", "run", "-S", "optimizer.lr=-1"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "error: params.yaml: config key 'optimizer.lr': must be > 0" in said
    assert (
        "Running stage 'train@" not in said and "Running stage 'download'" not in said
    )


def test_a_run_waits_for_a_living_creator_of_the_store(app, tmp_path):
    """Another process holds the store's creation lock (as one creating it on a
    slow machine would): the run waits, says so, and goes on once it is free,
    however long that took."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from filelock import FileLock; "
            f"lock = FileLock({str(app.db) + '.lock'!r}); lock.acquire(); "
            "print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        run = app.start("optimizer.max_epochs=1", stderr=stderr)
        wait_for(lambda: "waiting for it to finish" in log.read_text(), "the note", run)
        assert run.poll() is None  # still waiting, not failed
        holder.stdin.close()  # the creator finishes
        holder.wait()
        assert run.wait() == 0, log.read_text()
    assert len(app.jobs()) == 1


@pytest.mark.parametrize(
    ("method", "calls"),
    [
        ("set_terminated", 2),  # the second run's copy half-made, still RUNNING
        ("log_model_artifacts", 1),  # a logged model without its artifacts
        ("set_registered_model_alias", 1),  # versions made, the alias not yet
    ],
)
def test_an_interrupted_migration_completes_when_repeated(
    app, tmp_path, monkeypatch, method, calls
):
    """Stopped by Ctrl-C at one of its steps, then run again: the target holds
    each run once, complete, with its models and the champion's alias, and a
    sweep's best_run_id names the copy of its best job."""
    from mlflow.tracking import MlflowClient

    from mnist_regression.tracking.migrate import migrate

    app.launch("-m", "model.l2=0,0.01", "optimizer.max_epochs=2")
    source = app.client
    experiment = source.get_experiment_by_name("mnist-regression").experiment_id
    best = next(r for r in source.search_runs([experiment]) if r.inputs.dataset_inputs)
    source.create_registered_model("m")
    made = source.create_model_version(
        "m", f"runs:/{best.info.run_id}/model", run_id=best.info.run_id
    )
    source.set_registered_model_alias("m", "champion", made.version)
    target_uri = f"sqlite:///{tmp_path / 'team.db'}"

    real = getattr(MlflowClient, method)
    seen = []

    def interrupted(self, *args, **kwargs):
        seen.append(method)
        if len(seen) == calls:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, method, interrupted)
        with pytest.raises(KeyboardInterrupt):
            migrate(app.uri, target_uri, "mnist-regression")
    migrate(app.uri, target_uri, "mnist-regression")

    target = MlflowClient(target_uri)
    moved = target.get_experiment_by_name("mnist-regression").experiment_id
    before, after = store_contents(source, experiment), store_contents(target, moved)
    assert set(after) == set(before)  # each run once: no half copy beside it
    for name, contents in before.items():
        for what, value in contents.items():
            assert after[name][what] == value, (name, what)
    copies = target.search_runs([moved])
    assert len(copies) == len(before)
    assert all("migrating_from" not in r.data.tags for r in copies)
    assert target.get_model_version_by_alias("m", "champion").run_id in {
        r.info.run_id for r in copies
    }
    for model in target.search_logged_models([moved]):
        assert target.list_logged_model_artifacts(model.model_id)
    (parent,) = [r for r in copies if "sweep_grid" in r.data.tags]
    assert parent.data.tags["best_run_id"] in {r.info.run_id for r in copies}


def test_relative_sqlite_uris_mean_the_working_folder(app, tmp_path):
    """`sqlite:///x.db`, the spelling of MLflow's own docs, is x.db in the working
    folder: a new store, the same store again, through MLFLOW_TRACKING_URI, and
    as migrate's --from and --to."""
    relative = "sqlite:///x.db"
    for _ in range(2):  # created, then found
        app.launch("optimizer.max_epochs=1", f"tracking.uri={relative}")
    command = [
        o for o in app.command("optimizer.max_epochs=1") if "tracking.uri" not in o
    ]
    run(command, tmp_path, MLFLOW_TRACKING_URI=relative)
    assert len(runs_of(MlflowClient(f"sqlite:///{tmp_path / 'x.db'}"))) == 3
    assert not (tmp_path / "mlflow.db").exists()
    migrate = [sys.executable, "-m", "mnist_regression.tracking.migrate"]
    run([*migrate, "--from", relative, "--to", "sqlite:///y.db"], tmp_path)
    assert len(runs_of(MlflowClient(f"sqlite:///{tmp_path / 'y.db'}"))) == 3


def damage(db: Path) -> None:
    """One page of the store overwritten, the first whose loss SQLite's integrity
    check sees (an unused page would go unnoticed)."""
    whole = db.read_bytes()
    with contextlib.closing(sqlite3.connect(db)) as con:
        page = con.execute("PRAGMA page_size").fetchone()[0]
    for start in range(page, len(whole), page):
        db.write_bytes(whole[:start] + b"\xff" * page + whole[start + page :])
        try:
            with contextlib.closing(sqlite3.connect(db)) as con:
                verdict = con.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.DatabaseError:
            verdict = "malformed"
        if verdict != "ok":
            return
    raise AssertionError("no page of the store matters to its integrity check")


def test_a_damaged_store_is_refused_before_training(app, tmp_path):
    """A page of the store overwritten: `store check` and a run say so in one line
    naming SQLite's integrity check and the way out; nothing trains."""
    app.launch("-m", "model.l2=0,0.1", "optimizer.max_epochs=2")
    damage(app.db)
    damaged = app.db.read_bytes()
    store = [sys.executable, "-m", "mnist_regression.tracking.store", "--uri", app.uri]
    check = subprocess.run([*store, "check"], capture_output=True, text=True)
    assert check.returncode == 1
    (line,) = check.stderr.strip().splitlines()
    assert "integrity check" in line and "sync" in line
    out = tmp_path / "after"
    result = app.launch("optimizer.max_epochs=1", f"output_dir={out}", check=False)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "integrity check" in line and "tracking.uri" in line
    assert not (out / "history.csv").exists()
    assert app.db.read_bytes() == damaged  # the user's file is left alone


def test_a_read_only_store_is_named_before_training(app, tmp_path):
    """The store's file cannot be written (immutable, even to root), its folder
    can: one line naming the file, before any training."""
    app.launch("optimizer.max_epochs=1")
    if subprocess.run(["chattr", "+i", str(app.db)], capture_output=True).returncode:
        pytest.skip("chattr +i is not permitted here")
    try:
        out = tmp_path / "after"
        result = app.launch("optimizer.max_epochs=1", f"output_dir={out}", check=False)
    finally:
        subprocess.run(["chattr", "-i", str(app.db)], check=True)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert f"cannot write {app.db}" in line and "autoflush" not in line
    assert not (out / "history.csv").exists()


@pytest.mark.slow  # the run waits out SQLite's busy timeout
def test_a_store_locked_before_the_run_costs_nothing(app, tmp_path):
    """Another writer holds the store from before the run starts until it ends:
    the run trains, its folder keeps it, one line names the `store sync` that
    records it once the store is free."""
    app.launch("optimizer.max_epochs=1")  # the store exists
    lock = sqlite3.connect(app.db, isolation_level=None, timeout=HANG)
    lock.execute("BEGIN EXCLUSIVE")
    out = tmp_path / "locked"
    try:
        result = app.launch("optimizer.max_epochs=3", f"output_dir={out}", check=False)
    finally:
        lock.execute("COMMIT")
        lock.close()
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    (line,) = [x for x in result.stderr.splitlines() if "locked" in x]
    assert f"store sync {out}" in line
    assert (out / "metrics.json").is_file() and (out / "weights.npz").is_file()
    store = [sys.executable, "-m", "mnist_regression.tracking.store", "--uri", app.uri]
    run([*store, "sync", str(out)], tmp_path)
    assert len(app.jobs()) == 2
    assert {r.info.status for r in app.jobs()} == {"FINISHED"}


# --- 2. tracking never costs a result --------------------------------------------


@pytest.mark.slow  # each refused write waits out SQLite's busy timeout
def test_a_store_locked_past_the_busy_timeout_costs_nothing(app, tmp_path):
    """The lock is taken mid-run (after 2,000 of its 200,000 epochs) and held until
    the run has ended: training goes on, the folder holds the run, one line
    names the ``store sync`` that records it, and that command does; nothing is
    lost."""
    app.launch("optimizer.max_epochs=1")  # the store exists
    out = tmp_path / "locked-run"
    process = app.start(
        *LONG[1:],
        "optimizer.max_epochs=200000",
        "tracking.artifacts=true",
        "progress=true",
        f"output_dir={out}",
        stderr=subprocess.PIPE,
    )
    stderr = Stderr(process)
    wait_for(lambda: epochs_shown(stderr.text) >= 2000, "training to start", process)
    wait_for(lambda: len(app.runs()) == 2, "the recorder to make its run", process)
    lock = sqlite3.connect(app.db, isolation_level=None, timeout=HANG)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        assert not (out / "metrics.json").exists(), "the run ended before the lock"
        process.wait(timeout=HANG)
    finally:
        lock.execute("COMMIT")
        lock.close()
    err = stderr.join()
    assert process.returncode == 0, err
    no_traceback(err)
    lines = [x for x in err.splitlines() if "database is locked" in x]
    assert len(lines) == 1, err
    (line,) = lines
    assert f"python -m mnist_regression.tracking.store sync {out}" in line
    history = (out / "history.csv").read_text().splitlines()[1:]
    assert (out / "weights.npz").is_file() and (out / "metrics.json").is_file()
    sync = [sys.executable, "-m", "mnist_regression.tracking.store", "--uri", app.uri]
    assert "1 completed" in run([*sync, "sync", str(out)], tmp_path).stdout
    record = next(r for r in app.runs() if "200000" in r.info.run_name)
    assert record.info.status == "FINISHED"
    points = app.client.get_metric_history(record.info.run_id, "epoch/val_loss")
    assert [p.step for p in points] == [int(row.split(",")[1]) for row in history]
    assert "final_test_accuracy" in record.data.metrics
    artifacts = {a.path for a in app.client.list_artifacts(record.info.run_id)}
    assert {"weights.npz", "weights_grid.png"} <= artifacts


def test_an_unwritable_artifact_store_keeps_the_artifacts(app, tmp_path):
    """The artifacts cannot be written: the run still ends FINISHED with every
    point, the folder keeps weights and history, and one line names the sync
    that adds the artifacts once the store is fixed."""
    client = app.client
    client.create_experiment("mnist-regression", artifact_location="file:///proc/x")
    out = tmp_path / "run"
    result = app.launch("optimizer.max_epochs=2", f"output_dir={out}")
    no_traceback(result.stderr)
    (record,) = app.runs()
    assert record.info.status == "FINISHED"
    assert len(client.get_metric_history(record.info.run_id, "epoch/val_loss")) == 3
    assert "index.complete" not in record.data.tags  # sync adds the artifacts
    assert (out / "weights.npz").is_file()
    assert f"python -m mnist_regression.tracking.store sync {out}" in result.stderr


# The app with the disk of its output folder filled once its first epoch is
# evaluated: a real tmpfs, filled to ENOSPC with zeros, while the run trains on.
FILL_DISK_AT_FIRST_EPOCH = """
import runpy, sys
from mnist_regression.app import run

fill, sys.argv = sys.argv[1], sys.argv[:1] + sys.argv[2:]
on_eval = run.Progress.on_eval


def filling(self, epoch, values):
    on_eval(self, epoch, values)
    if epoch == 1:
        with open(fill, "wb") as handle:
            try:
                while True:
                    handle.write(bytes(1 << 20))
                    handle.flush()
            except OSError:
                pass


run.Progress.on_eval = filling
runpy.run_module("mnist_regression.train", run_name="__main__")
"""


def test_a_disk_that_fills_during_the_run_keeps_the_outputs_elsewhere(app, tmp_path):
    """The output folder passes the free-space check, then its disk fills while
    the run trains: the weights, history and metrics are written elsewhere, and
    one line says where."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "fill_disk.py"
    script.write_text(FILL_DISK_AT_FIRST_EPOCH)
    command = app.command("optimizer.max_epochs=3", f"output_dir={disk / 'run'}")
    command = [command[0], str(script), str(disk / "filler"), *command[3:]]
    inner = (
        f"mount -t tmpfs -o size=20m tmpfs {shlex.quote(str(disk))} || exit 77; "
        + shlex.join(command)
    )
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", inner],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    if result.returncode == 77 or "unshare failed" in result.stderr:
        pytest.skip(f"no private tmpfs here: {result.stderr.strip()}")
    no_traceback(result.stderr)
    assert result.returncode == 1
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "cannot write the outputs to" in line and "No space left" in line
    kept = Path(re.search(r"kept in (\S+):", line).group(1))
    try:
        assert {"weights.npz", "history.csv", "metrics.json"} <= {
            p.name for p in kept.iterdir()
        }
        metrics = json.loads((kept / "metrics.json").read_text())
        assert metrics["epochs_run"] == 3
        (record,) = app.runs()
        assert record.info.status != "RUNNING"
        history = app.client.get_metric_history(record.info.run_id, "epoch/val_loss")
        assert len(history) == 4  # epochs 0-3, every point kept
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def test_a_run_whose_process_died_is_marked_killed(app, tmp_path):
    """SIGKILL to a run (and so to its recorder): its MLflow run stays RUNNING
    until ``store sync`` reads the folder, finds no metrics.json and the process
    gone, and ends it KILLED with the evaluations the folder holds."""
    out = tmp_path / "run"
    process = app.start(*LONG, f"output_dir={out}")
    wait_for(lambda: app.runs(), "the run to start", process)
    wait_for(lambda: len(read_rows(out / "history.csv")) >= 3, "evaluations", process)
    process.kill()  # SIGKILL: nothing of the run can react
    process.wait(timeout=HANG)
    (record,) = app.runs()
    assert record.info.status == "RUNNING"
    sync = [sys.executable, "-m", "mnist_regression.tracking.store", "--uri", app.uri]
    run([*sync, "sync", str(out)], tmp_path)
    dead = app.client.get_run(record.info.run_id)
    assert dead.info.status == "KILLED"
    assert "ended without writing metrics.json" in dead.data.tags["failure_reason"]
    points = app.client.get_metric_history(record.info.run_id, "epoch/val_loss")
    assert [p.step for p in points] == [
        int(row["epoch"]) for row in read_rows(out / "history.csv")
    ]


# --- 3. signals ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "count"),
    [(signal.SIGINT, 1), (signal.SIGTERM, 2), (signal.SIGINT, 2), (signal.SIGTERM, 3)],
)
def test_signals_end_the_run_as_killed_keeping_every_point(
    app, tmp_path, signum, count
):
    out = tmp_path / "run"
    process = app.start(
        *LONG, "progress=true", f"output_dir={out}", stderr=subprocess.PIPE
    )
    stderr = Stderr(process)
    wait_for(lambda: epochs_shown(stderr.text) >= 4000, "a few evaluations", process)
    for _ in range(count):
        process.send_signal(signum)
        time.sleep(0.05)
    process.wait(timeout=HANG)
    err = stderr.join()
    assert process.returncode == 128 + signum
    no_traceback(err)
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert f"stopped by {name}" in err
    if count == 3:  # a third signal may stop the recording: sync completes it
        sync = [sys.executable, "-m", "mnist_regression.tracking.store"]
        run([*sync, "--uri", app.uri, "sync", str(out)], tmp_path)
    (record,) = app.runs()
    assert record.info.status == "KILLED"
    history = app.client.get_metric_history(record.info.run_id, "epoch/val_loss")
    steps = [point.step for point in history]
    assert len(steps) >= 2
    assert sorted(steps) == list(range(0, 2000 * len(steps), 2000))
    # the output folder has the same evaluations, and says the run did not finish
    # (a third signal may stop that writing too: its files are whole or absent)
    metrics = out / "metrics.json"
    if count < 3 or metrics.is_file():
        record = json.loads(metrics.read_text())
        assert record["status"] == "KILLED"
        assert f"stopped by {name}" in record["failure_reason"]
        rows = (out / "history.csv").read_text().splitlines()[1:]
        epochs = [int(row.split(",")[1]) for row in rows]
        # the same, but for the point that the signal may have caught between
        # its two records
        shared = min(len(epochs), len(steps))
        assert epochs[:shared] == sorted(steps)[:shared]
        assert abs(len(epochs) - len(steps)) <= 1
        assert not (out / "weights.npz").exists()


def test_sigterm_to_a_sweep_stops_its_workers(app):
    process = app.start(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model.l2=0,0.1,1,10",
        *LONG,
        stderr=subprocess.PIPE,
    )
    wait_for(
        lambda: len([r for r in app.jobs() if r.info.status == "RUNNING"]) == 2,
        "two jobs to run",
        process,
    )
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=HANG)
    assert process.returncode == 143
    no_traceback(err)
    records = app.jobs()
    assert len(records) == 2  # the sweep stopped: no job started after the signal
    assert {r.info.status for r in records} == {"KILLED"}
    (parent,) = [r for r in app.runs() if "sweep_grid" in r.data.tags]
    assert parent.info.status == "KILLED"
    assert {r.data.tags["mlflow.parentRunId"] for r in records} == {parent.info.run_id}
    for record in records:
        assert not psutil.pid_exists(int(record.data.tags["pid"]))


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_a_killed_dvc_repro_takes_its_stage_with_it(app, tmp_path, shell):
    """`kill -9` of `dvc repro` while its training stage runs a sweep: the
    stage's processes see dvc gone and end, their runs KILLED, instead of
    training on as orphans. DVC runs the stage through $SHELL: bash replaces
    itself with the command, dash (/bin/sh here) waits for it and lives on."""
    command = app.command("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    command += ["model.l2=0,0.1,1,10", *LONG]
    project = tmp_path / "project"
    # dvc.kill() below signals dvc alone; the stage sees it gone
    dvc = start_dvc_repro(project, {"cmd": shlex.join(command)}, SHELL=shell)
    wait_for(
        lambda: len([r for r in app.jobs() if r.info.status == "RUNNING"]) == 2,
        "two jobs to run",
        dvc,
    )
    dvc.kill()
    dvc.wait()
    wait_for(
        lambda: app.jobs() and all(r.info.status != "RUNNING" for r in app.jobs()),
        "the orphaned jobs to end",
    )
    records = app.jobs()
    assert {r.info.status for r in records} == {"KILLED"}
    for record in records:
        wait_for(
            lambda pid=int(record.data.tags["pid"]): not psutil.pid_exists(pid),
            "the job's process to exit",
        )


# --- 4. outputs --------------------------------------------------------------------


def test_concurrent_runs_keep_their_own_outputs(app, tmp_path):
    processes = [
        app.start(f"seed={seed}", "optimizer.max_epochs=3", dirs=False)
        for seed in range(4)
    ]
    for process in processes:
        assert process.wait(timeout=HANG) == 0
    folders = sorted(p.parent for p in (tmp_path / "outputs").rglob("metrics.json"))
    assert len(folders) == 4
    seeds = {
        json.loads((f / "metrics.json").read_text())["config"]["seed"] for f in folders
    }
    assert seeds == {0, 1, 2, 3}
    for folder in folders:
        assert (folder / "history.csv").is_file() and (folder / "weights.npz").is_file()
    assert {r.info.status for r in app.runs()} == {"FINISHED"}
    assert len(app.runs()) == 4


def test_a_sweep_clears_job_folders_of_an_earlier_sweep(app, tmp_path):
    out = tmp_path / "stage"
    app.launch("-m", "model.l2=0,0.1,1", "optimizer.max_epochs=2", f"output_dir={out}")
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["0", "1", "2"]
    app.launch("-m", "model.l2=0,0.1", "optimizer.max_epochs=2", f"output_dir={out}")
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["0", "1"]


# --- 5. data -------------------------------------------------------------------


def test_damaged_prepared_data_is_named_in_one_line(app, data_cfg):
    path = Path(data_cfg.prepared_dir) / "binary.npz"
    path.write_bytes(path.read_bytes()[:500])
    result = app.launch("optimizer.max_epochs=1", check=False)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert str(path) in line and "dvc repro prepare" in line
    assert app.runs() == []  # refused before any run was recorded


def test_a_corrupt_raw_file_stops_prepare_naming_it(repo_copy, npm_raw_dir):
    raw = repo_copy / "data" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_SHA256:
        (raw / name).write_bytes((npm_raw_dir / name).read_bytes())
    damaged = raw / "t10k-labels-idx1-ubyte"
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    run(["dvc", "repro", "params"], repo_copy)  # as a fresh clone's first stage
    result = subprocess.run(
        ["dvc", "repro", "-s", "prepare"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        },
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{Path('data/raw/t10k-labels-idx1-ubyte')} fails verification" in output
    assert "dvc repro download" in output
    no_traceback(output)
    assert not (repo_copy / "data" / "prepared" / "binary.npz").exists()


def test_divergence_without_overflow_fails_and_names_the_setting(app):
    result = app.launch("optimizer.lr=1000000", "optimizer.max_epochs=20", check=False)
    assert result.returncode == 1
    assert "optimizer.lr=1e+06 is above the largest stable rate" in result.stderr
    no_traceback(result.stderr)
    (record,) = app.runs()
    assert record.info.status == "FAILED"
    blamed = app.launch(
        "optimizer.lr=1", "model.l2=10", "optimizer.max_epochs=20", check=False
    )
    assert "model.l2=10 lowers the largest stable rate" in blamed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sede=3"], "config key 'sede'"),
        (["nonsense"], "argument 'nonsense' is not key=value"),
    ],
)
def test_stage_entry_points_refuse_unknown_arguments(args, message):
    for stage in ("download", "prepare", "report", "plots_template"):
        result = subprocess.run(
            [sys.executable, "-m", f"mnist_regression.stages.{stage}", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1, (stage, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert message in line, stage


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seed=-1", "data.val_split=random"], "config key 'seed': must be >= 0"),
        (["data.prepared_dir=/proc/x"], "'data.prepared_dir': cannot create /proc/x"),
    ],
)
def test_prepare_refuses_bad_values_in_one_line(args, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mnist_regression.stages.prepare", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert message in line


def test_stage_entry_points_answer_help():
    result = subprocess.run(
        [sys.executable, "-m", "mnist_regression.stages.prepare", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert "key=value" in result.stdout and "prepare" in result.stdout


@pytest.mark.parametrize("content", ["", '{"run_key": "abc", "metr', "[1, 2]"])
def test_sync_of_an_unreadable_run_record_is_one_line(app, tmp_path, content):
    """A damaged run.json is named, the other folders are indexed, the file is
    left as it was."""
    app.launch(
        "-m", "model.l2=0,0.1", "optimizer.max_epochs=1", "tracking.enabled=false"
    )
    damaged = tmp_path / "multirun" / "1" / "run.json"
    damaged.write_text(content)
    store = f"sqlite:///{tmp_path / 'synced.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "mnist_regression.tracking.store", "--uri", store]
        + ["sync", str(tmp_path / "multirun")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    no_traceback(result.stderr)
    assert result.stdout.startswith("1 runs created")
    (line,) = result.stderr.strip().splitlines()
    assert f"{damaged.parent}: run.json is missing or damaged" in line
    assert damaged.read_text() == content  # left as it was


def test_check_and_sync_report_plainly(app, tmp_path):
    app.launch("optimizer.max_epochs=1", f"output_dir={tmp_path / 'run'}")
    env = {**os.environ, "MLFLOW_TRACKING_URI": app.uri}
    for args, expected in (
        (["check"], "usable"),
        (["sync", str(tmp_path / "run")], "0 runs created, 0 completed, 1 already"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "mnist_regression.tracking.store", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout
    assert MlflowClient(app.uri).search_experiments()
    assert np.isfinite(app.runs()[0].data.metrics["final_val_loss"])
