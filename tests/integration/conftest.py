"""Fixtures that run real stages: the npm download once per session, repo copies."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient

from mnist_regression.data.prepare import prepare

from ..conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def clone_files(root: Path) -> list[Path]:
    """What a fresh clone of ``root`` holds: the files git tracks, and new ones
    it does not ignore (a change not committed yet); no outputs, no caches."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [Path(name) for name in listed.split("\0") if (root / name).is_file()]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's bin/ first on PATH; fail loudly."""
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    result = subprocess.run(
        args, cwd=cwd, env=environ, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="session")
def npm_raw_dir(tmp_path_factory) -> Path:
    """The real MNIST files, fetched by the download stage from npm alone."""
    raw = tmp_path_factory.mktemp("npm") / "raw"
    run(
        [
            sys.executable,
            "-m",
            "mnist_regression.stages.download",
            f"data.raw_dir={raw}",
            "data.download.mirror=null",
            "data.download.urls=[]",
        ],
        cwd=REPO_ROOT,
    )
    return raw


def point_download_at(repo: Path, mirror: Path) -> None:
    """Serve the raw files from a local mirror so a test needs no registry: the
    setting written into conf/ and params.yaml recomposed, as a user would."""
    conf = repo / "conf" / "data" / "mnist.yaml"
    data = yaml.safe_load(conf.read_text())
    data["download"].update(mirror=str(mirror), urls=[], npm_package=None)
    conf.write_text(yaml.safe_dump(data, sort_keys=False))
    run([sys.executable, "-m", "mnist_regression.params"], repo)


def start_dvc_repro(project: Path, stage: dict, **env: str) -> subprocess.Popen:
    """``dvc repro`` in the background, in a session of its own, in a new git and
    DVC project ``project`` whose one stage ``train`` is ``stage``."""
    project.mkdir(parents=True, exist_ok=True)
    (project / "dvc.yaml").write_text(json.dumps({"stages": {"train": stage}}))
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    for step in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(step, cwd=project, check=True, env=environ)
    return subprocess.Popen(
        [str(BIN / "dvc"), "repro"],
        cwd=project,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # signals to dvc (or its group) reach nothing else
    )


@pytest.fixture(autouse=True)
def mlflow_target_put_back():
    """A test that points MLflow's fluent API at its store (``set_tracking_uri``
    is global to the process) leaves it as it found it: otherwise a later test
    in the same worker reads that store whatever its MLFLOW_TRACKING_URI says."""
    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(None)
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A git clone-like copy of the project (no data, no runs), committed."""
    copy = tmp_path / "repo"
    for name in clone_files(REPO_ROOT):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, copy / name)
    run(["git", "init", "-q"], copy)
    # an identity of its own: `dvc exp run` commits, whatever the machine's config
    run(["git", "config", "user.name", "test"], copy)
    run(["git", "config", "user.email", "test@localhost"], copy)
    run(["git", "add", "-A"], copy)
    run(["git", "commit", "-q", "-m", "copy"], copy)
    return copy


@pytest.fixture
def app(data_cfg, tmp_path):
    """The Hydra app on the tiny data set, tracked in a store under tmp_path.

    ``command(*overrides, dirs=True)`` builds its command line (``dirs=False``
    leaves Hydra's output folders at their defaults, under tmp_path); ``launch``
    runs it to the end; ``start`` starts it in the background.
    """
    prepare(data_cfg, seed=0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = [
        sys.executable,
        "-m",
        "mnist_regression.train",
        f"data.prepared_dir={data_cfg.prepared_dir}",
        f"data.train_size={data_cfg.train_size}",
        f"data.val_fraction={data_cfg.val_fraction}",
        f"tracking.uri={uri}",
    ]
    hydra_dirs = [
        f"hydra.run.dir={tmp_path / 'outputs'}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]

    def command(*overrides, dirs=True) -> list[str]:
        flags = [o for o in overrides if o.startswith("-")]
        rest = [o for o in overrides if o not in flags]
        return [*base[:3], *flags, *base[3:], *(hydra_dirs if dirs else []), *rest]

    def launch(*overrides, check=True, dirs=True):
        if check:
            return run(command(*overrides, dirs=dirs), tmp_path)
        return subprocess.run(
            command(*overrides, dirs=dirs), cwd=tmp_path, capture_output=True, text=True
        )

    started: list[subprocess.Popen] = []

    def start(*overrides, dirs=True, **popen) -> subprocess.Popen:
        """The app in the background, in a session of its own: whatever is left
        of it (a sweep's workers too) is killed when the test ends."""
        process = subprocess.Popen(
            command(*overrides, dirs=dirs),
            cwd=tmp_path,
            text=True,
            start_new_session=True,
            **popen,
        )
        started.append(process)
        return process

    db = tmp_path / "mlflow.db"
    client = LazyClient(uri)

    def runs() -> list:
        """The runs so far; none before the app has created the store (a client
        that opened it first would create it itself, racing the app)."""
        return runs_of(client) if db.exists() else []

    def jobs() -> list:
        """The training runs, without the parent runs of sweeps."""
        return [r for r in runs() if "sweep_grid" not in r.data.tags]

    yield SimpleNamespace(
        jobs=jobs,
        command=command,
        launch=launch,
        start=start,
        runs=runs,
        uri=uri,
        db=db,
        client=client,
    )
    for process in started:
        end_group(process)


class LazyClient:
    """An MlflowClient made on first use: making one opens (and so creates) the
    store, which the app under test must be the first to do."""

    def __init__(self, uri: str):
        self.uri, self._client = uri, None

    def __getattr__(self, name: str):
        if self._client is None:
            self._client = MlflowClient(self.uri)
        return getattr(self._client, name)


def runs_of(client, experiment: str = "mnist-regression") -> list:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], order_by=["start_time ASC"])


LONG = (  # a run that goes on until stopped, evaluating ~20 times a second
    "optimizer.max_epochs=1000000000",
    "optimizer.patience=1000000000",
    "optimizer.lr=0.0001",
    "optimizer.batch_size=null",
    "optimizer.eval_every=2000",
    "tracking.artifacts=false",
)


# Waits end on a condition, however busy the machine: what a test waits for
# happens, or the process it waits on ends first. HANG only stops a test that
# would otherwise wait forever (a bug), far beyond any load.
HANG = 1800.0


def wait_for(condition, what: str = "a condition", process=None, hang: float = HANG):
    """Poll ``condition()`` until it returns something truthy. Fails when
    ``process`` (a Popen, if given) has ended without the condition holding."""
    deadline = time.monotonic() + hang
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            value = condition()  # a last look, after the process ended
            if value:
                return value
            raise AssertionError(
                f"the process ended (exit {process.returncode}) before {what}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {hang:g} s: a hang")
        time.sleep(0.05)


def end_group(process: subprocess.Popen) -> None:
    """Kill what is left of a process started in a session of its own: the
    process and every child it made (a sweep's workers)."""
    if process.poll() is None or _group_alive(process.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.wait(timeout=HANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    """Whether an MLflow server at ``url`` answers its health check."""
    try:
        return requests.get(f"{url}/health", timeout=10).ok
    except requests.RequestException:  # not up yet, or too busy to answer now
        return False


def store_contents(client, experiment_id: str) -> dict:
    """Everything a run holds, keyed by run name; ids mapped to run names."""
    runs = client.search_runs([experiment_id])
    names = {r.info.run_id: r.info.run_name for r in runs}
    found = {}
    for run in runs:
        tags = {
            k: names.get(v, v) for k, v in run.data.tags.items() if k != "migrated_from"
        }
        histories = {
            key: [
                (m.step, m.timestamp, m.value)
                for m in client.get_metric_history(run.info.run_id, key)
            ]
            for key in run.data.metrics
        }
        artifacts = sorted(
            f.path
            for top in client.list_artifacts(run.info.run_id)
            for f in (
                [top]
                if not top.is_dir
                else client.list_artifacts(run.info.run_id, top.path)
            )
        )
        models = client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        found[run.info.run_name] = {
            "status": run.info.status,
            "times": (run.info.start_time, run.info.end_time),
            "params": run.data.params,
            "tags": tags,
            "histories": histories,
            "datasets": [d.dataset.digest for d in run.inputs.dataset_inputs],
            "artifacts": artifacts,
            "models": [(m.name, str(m.status)) for m in models],
            "outputs": len(run.outputs.model_outputs) if run.outputs else 0,
        }
    return found
