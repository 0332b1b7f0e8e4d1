"""The team's tracking server: PostgreSQL on 127.0.0.1, MLflow's basic-auth, the
project's own start command (``python -m mnist_regression.tracking.server``).

PostgreSQL runs as its own cluster in a temporary directory, started and stopped
by the test as the ``postgres`` user (Debian's package; `make test` installs it).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from mnist_regression.data.prepare import load_task

from .conftest import HANG, end_group, free_port, healthy, store_contents, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.services]

ADMIN_PASSWORD = "admin-password-for-the-test"
USERS = {"alice": "alice-password", "bob": "bob-password"}


DB_PASSWORD = "database-password-for-the-test"


def as_postgres(*command: str) -> None:
    """``command`` as the postgres user, the password in its environment (never
    on a command line: another test looks for it in every process's)."""
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *command],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": DB_PASSWORD},
    )


@pytest.fixture
def postgres(tmp_path, monkeypatch):
    """A PostgreSQL cluster of its own on 127.0.0.1 that asks for a password,
    given to clients as a user would, in a 0600 PGPASSFILE: yields the URI
    prefix (no password in it) of its databases ``mlflow`` and ``mlflow_auth``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.fail(
            "PostgreSQL's server binaries and root are needed: `make test` installs "
            "Debian's postgresql"
        )
    bin_dir = Path(found[-1]).parent
    home = Path(tempfile.mkdtemp(prefix="mnist-regression-pg-"))
    home.chmod(0o755)
    data = home / "data"
    shutil.chown(home, "postgres", "postgres")
    port = free_port()
    secret = home / "password"
    secret.write_text(DB_PASSWORD)
    shutil.chown(secret, "postgres", "postgres")
    as_postgres(
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-A",
        "scram-sha-256",
        "-U",
        "postgres",
        f"--pwfile={secret}",
    )
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:*:*:postgres:{DB_PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"
    log = str(home / "server.log")  # also keeps the server off the test's pipes
    as_postgres(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        log,
        "-o",
        options,
        "-w",
        "start",
    )
    try:
        for name in ("mlflow", "mlflow_auth"):
            as_postgres(
                str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), name
            )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(home, ignore_errors=True)


class Server:
    """The project's server command on one port, stopped and started at will."""

    def __init__(self, postgres: str, folder: Path):
        self.postgres, self.folder = postgres, folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self) -> str:
        log = (self.folder / "server.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mnist_regression.tracking.server"]
            + ["--backend-store-uri", f"{self.postgres}/mlflow"]
            + ["--auth-db", f"{self.postgres}/mlflow_auth"]
            + ["--artifacts-destination", str(self.folder / "served-artifacts")]
            + ["--port", str(self.port), "--workers", "1"],
            env={**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        process = self.process
        wait_for(lambda: healthy(self.url), "the server", process)
        assert process.poll() is None, (self.folder / "server.log").read_text()
        return self.url

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(HANG)


@pytest.fixture
def served(postgres, tmp_path, monkeypatch):
    """A started server with the users alice and bob, added by the admin."""
    server = Server(postgres, tmp_path)
    try:
        server.start()
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        from mlflow.server import get_app_client

        admin = get_app_client("basic-auth", tracking_uri=server.url)
        for name, password in USERS.items():
            admin.create_user(name, password)
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(served) -> str:
    return served.url


def client_as(url: str, user: str, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", USERS[user])
    return MlflowClient(url)


def test_no_process_shows_a_password_and_no_secret_file_outlives_the_server(
    served, tmp_path
):
    """``ps`` on the server's machine: neither the database's nor the admin's
    password on any command line; the basic-auth file gone once it stops."""
    import psutil

    shown = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if DB_PASSWORD in line or ADMIN_PASSWORD in line:
            shown.append(line)
    assert not shown
    settings = [
        Path(p.environ()["MLFLOW_AUTH_CONFIG_PATH"])
        for p in psutil.Process(served.process.pid).children(recursive=True)
        if "MLFLOW_AUTH_CONFIG_PATH" in p.environ()
    ]
    assert settings and all(oct(f.stat().st_mode)[-3:] == "600" for f in settings)
    served.stop()
    assert not any(f.exists() for f in settings)


def test_a_server_killed_with_sigkill_takes_its_processes_and_file_with_it(served):
    """SIGKILL to the server command (an out-of-memory killer's choice): mlflow
    server and its workers end, the port stops answering, no file is left."""
    import psutil

    command = psutil.Process(served.process.pid)
    below = command.children(recursive=True)
    settings = [
        Path(p.environ()["MLFLOW_AUTH_CONFIG_PATH"])
        for p in below
        if "MLFLOW_AUTH_CONFIG_PATH" in p.environ()
    ]
    assert below and settings
    command.kill()
    served.process.wait(HANG)

    def alive(process) -> bool:
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    wait_for(lambda: not any(alive(p) for p in below), "the server's processes to end")
    assert not healthy(served.url)
    assert not any(f.exists() for f in settings)


def test_the_server_refuses_anonymous_clients(server):
    answer = requests.get(
        f"{server}/api/2.0/mlflow/experiments/search",
        params={"max_results": 1},
        timeout=HANG,
    )
    assert answer.status_code == 401


def test_a_sweep_logs_to_the_server_and_reads_back(app, data_cfg, server, monkeypatch):
    command = [
        arg if not arg.startswith("tracking.uri=") else f"tracking.uri={server}"
        for arg in app.command("-m", "model.l2=0,0.01")
    ]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": USERS["alice"],
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    alice = client_as(server, "alice", monkeypatch)
    experiment = alice.get_experiment_by_name("mnist-regression")
    runs = alice.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "sweep_grid" in r.data.tags]
    jobs = [r for r in runs if r not in parents]
    assert len(parents) == 1 and len(jobs) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
    job = jobs[0]
    history = alice.get_metric_history(job.info.run_id, "epoch/val_loss")
    assert len(history) == job.data.metrics["epochs_run"] + 1  # epoch 0 too
    (image,) = alice.list_artifacts(job.info.run_id, "weights")
    local = alice.download_artifacts(job.info.run_id, image.path)
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    import mlflow
    import numpy as np

    (logged,) = alice.search_logged_models(
        [experiment.experiment_id],
        filter_string=f"source_run_id = '{job.info.run_id}'",
    )
    assert logged.artifact_location.startswith("mlflow-artifacts:")  # served
    saved = mlflow.artifacts.download_artifacts(
        artifact_uri=logged.artifact_location, tracking_uri=server
    )
    model = mlflow.pyfunc.load_model(saved)
    pixels = load_task(data_cfg.prepared_dir, "binary")["x_test"][:5]
    assert set(np.asarray(model.predict(pixels)).tolist()) <= {2, 3}  # digits

    bob = client_as(server, "bob", monkeypatch)
    assert bob.get_run(job.info.run_id).info.run_id == job.info.run_id  # may read
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as refused:
        bob.set_tag(job.info.run_id, "note", "changed by someone else")
    assert "PERMISSION_DENIED" in str(refused.value) or "403" in str(refused.value)
    assert "note" not in alice.get_run(job.info.run_id).data.tags


def as_user(user: str) -> dict[str, str]:
    password = ADMIN_PASSWORD if user == "admin" else USERS[user]
    return {
        **os.environ,
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password,
    }


def test_a_teammate_is_told_how_to_get_in_and_trains_once_added(app, server):
    """bob's run in the experiment alice's run created is refused (403) before
    it trains, with one line naming the command that lets him in; once the admin
    runs it, his runs land in the same experiment."""
    command = [
        arg if not arg.startswith("tracking.uri=") else f"tracking.uri={server}"
        for arg in app.command("optimizer.max_epochs=1")
    ]

    def train(user: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            command, env=as_user(user), capture_output=True, text=True
        )

    assert train("alice").returncode == 0
    refused = train("bob")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert "user 'bob' may not write runs to the experiment 'mnist-regression'" in line
    team = [sys.executable, "-m", "mnist_regression.tracking.team"]
    grant = line.split("`")[1].split()  # the command the message names
    assert grant[:3] == ["python", "-m", "mnist_regression.tracking.team"]
    done = subprocess.run(
        [*team, *grant[3:]], env=as_user("admin"), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "'mnist-regression-editors' (EDIT): bob" in done.stdout
    assert train("bob").returncode == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server)  # as the admin (the served fixture's login)
    experiment = client.get_experiment_by_name("mnist-regression")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    not_admin = subprocess.run(
        [*team, "--tracking-uri", server, "alice"],
        env=as_user("bob"),
        capture_output=True,
        text=True,
    )
    assert not_admin.returncode == 1 and "run it as an admin" in not_admin.stderr


@pytest.mark.parametrize(
    "location",
    ["file:///etc", "/srv/elsewhere", "s3://a-bucket/x", "mlflow-artifacts:/../x"],
)
def test_experiments_keep_their_artifacts_under_the_servers_root(
    server, monkeypatch, location
):
    from mlflow.exceptions import MlflowException

    alice = client_as(server, "alice", monkeypatch)
    with pytest.raises(MlflowException, match="is refused"):
        alice.create_experiment("elsewhere", artifact_location=location)
    assert alice.get_experiment_by_name("elsewhere") is None
    made = alice.get_experiment(alice.create_experiment("at-home"))
    assert made.artifact_location.startswith("mlflow-artifacts:")


def as_alice() -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": USERS["alice"],
    }


def test_a_server_that_stops_mid_sweep_loses_nothing(
    app, served, monkeypatch, tmp_path, request
):
    url = served.url
    command = [
        arg if not arg.startswith("tracking.uri=") else f"tracking.uri={url}"
        for arg in app.command(
            "-m",
            "model.l2=0,0.01",
            "optimizer.max_epochs=20000",
            "optimizer.patience=20000",
        )
    ]
    sweep = subprocess.Popen(
        command,
        env=as_alice(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    request.addfinalizer(lambda: end_group(sweep))
    alice = client_as(url, "alice", monkeypatch)

    def training() -> bool:
        experiment = alice.get_experiment_by_name("mnist-regression")
        if experiment is None:
            return False
        runs = alice.search_runs(
            [experiment.experiment_id], "attributes.status = 'RUNNING'"
        )
        # a job that has started (its dataset input is the last step of that)
        return any(r.inputs.dataset_inputs for r in runs)

    wait_for(training, "the first job to start", sweep)
    served.stop()
    _, err = sweep.communicate(timeout=HANG)

    # what the user gets: training went on, every job's folder holds its run,
    # and one line names the command that records them
    assert "Traceback" not in err
    jobs = tmp_path / "multirun"
    assert f"python -m mnist_regression.tracking.store sync {jobs}" in err
    for job in ("0", "1"):
        history = (jobs / job / "history.csv").read_text().splitlines()
        assert len(history) == 20000 + 2  # header, epoch 0, every epoch: all trained

    served.start()
    synced = subprocess.run(
        [sys.executable, "-m", "mnist_regression.tracking.store", "--uri", url]
        + ["sync", str(jobs)],
        env=as_alice(),
        capture_output=True,
        text=True,
    )
    assert synced.returncode == 0, synced.stderr
    experiment = alice.get_experiment_by_name("mnist-regression").experiment_id
    runs = alice.search_runs([experiment])
    jobs_runs = [r for r in runs if r.inputs.dataset_inputs]
    assert len(jobs_runs) == 2
    for job in jobs_runs:
        assert job.info.status == "FINISHED"
        points = alice.get_metric_history(job.info.run_id, "epoch/val_loss")
        assert len(points) == 20001
        assert {a.path for a in alice.list_artifacts(job.info.run_id)} >= {
            "weights_grid.png",
            "weights",
        }
    (parent,) = [r for r in runs if "sweep_grid" in r.data.tags]
    assert parent.info.status == "FINISHED"


def test_the_sqlite_store_moves_to_the_server_whole(app, server, monkeypatch):
    """`python -m mnist_regression.tracking.migrate` copies a sweep from the embedded
    store to the server: both sides hold the same runs, parameters, tags, metric
    histories, dataset inputs, artifacts, logged models and registered versions;
    a second run of the command copies nothing twice."""

    app.launch("-m", "model.l2=0,0.01", "optimizer.max_epochs=3")
    source = app.client
    experiment = source.get_experiment_by_name("mnist-regression").experiment_id
    # as the pipeline registers its champions
    best = next(r for r in source.search_runs([experiment]) if r.inputs.dataset_inputs)
    source.create_registered_model("m")
    version = source.create_model_version(
        "m", f"runs:/{best.info.run_id}/model", run_id=best.info.run_id
    )
    source.set_registered_model_alias("m", "champion", version.version)

    def migrate() -> str:
        result = subprocess.run(
            [sys.executable, "-m", "mnist_regression.tracking.migrate"]
            + ["--from", app.uri, "--to", server],
            env=as_alice(),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "3 runs copied" in migrate()
    again = migrate()
    assert "0 runs copied" in again and "3 runs were already there" in again
    assert "0 logged models, 0 registered model versions" in again

    target = client_as(server, "alice", monkeypatch)
    moved = target.get_experiment_by_name("mnist-regression").experiment_id

    before = store_contents(source, experiment)
    after = store_contents(target, moved)
    assert set(after) == set(before)
    for name, run in before.items():
        for what, value in run.items():
            assert after[name][what] == value, (name, what)
    assert sum(len(h) for r in after.values() for h in r["histories"].values()) > 50
    (registered,) = target.search_registered_models("name = 'm'")
    assert set(registered.aliases) == {"champion"}
    copy = target.get_model_version_by_alias("m", "champion")
    assert target.get_run(copy.run_id).info.run_name == best.info.run_name
