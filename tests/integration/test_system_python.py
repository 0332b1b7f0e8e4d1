"""The data stages under the machine's own Python (Debian 12: 3.11.2), as a user
without root: what a user who cannot install another Python runs."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ..conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYSTEM_PYTHON = Path("/usr/bin/python3")


def uv() -> str:
    found = shutil.which("uv") or REPO_ROOT / ".tools" / "bin" / "uv"
    if not Path(found).exists():
        pytest.skip("uv is not installed (make sets it up in .tools/)")
    return str(found)


@pytest.fixture(scope="module")
def shared_dir():
    """A folder any user may read (pytest's own are the owner's alone)."""
    root = Path(tempfile.mkdtemp(prefix="mnist-system-python-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def system_venv(shared_dir) -> Path:
    """A venv of /usr/bin/python3 with the locked dependencies."""
    if not SYSTEM_PYTHON.exists():
        pytest.skip("no /usr/bin/python3 on this machine")
    root = shared_dir
    venv = root / "venv"
    requirements = root / "requirements.txt"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    steps = [
        [uv(), "venv", "--quiet", "--python", str(SYSTEM_PYTHON), str(venv)],
        [uv(), "export", "--quiet", "--frozen", "--no-dev", "--no-emit-project",
         "--no-hashes", "--project", str(REPO_ROOT), "-o", str(requirements)],
        [uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "-r", str(requirements)],
    ]  # fmt: skip
    for step in steps:
        subprocess.run(step, check=True, env=env, capture_output=True)
    return venv


def as_user_without_root(command: list[str], home: Path) -> list[str]:
    """``command`` as ``nobody`` when the suite runs as root; as is otherwise."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        pytest.skip("runuser is missing: cannot drop root")
    shutil.chown(home, "nobody", "nogroup")
    return ["runuser", "-u", "nobody", "--", *command]


def test_the_data_stages_run_under_debians_python_without_root(system_venv, shared_dir):
    """The project's files as a clone holds them, owned by root, read by the user."""
    project = shared_dir / "project"
    for name in ("src", "params.yaml"):
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy
        copy(REPO_ROOT / name, project / name)
    work = shared_dir / "home"
    work.mkdir()
    python = system_venv / "bin" / "python"
    version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version_info[:3])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env = {
        "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(work),
        "npm_config_cache": str(work / ".npm"),
        "PYTHONPATH": str(project / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": str(work / ".matplotlib"),
    }
    overrides = [f"data.raw_dir={work / 'raw'}", f"data.prepared_dir={work / 'prep'}"]
    for stage, extra in [
        ("download", ["data.download.mirror=null", "data.download.urls=[]"]),
        ("prepare", []),
    ]:
        command = [str(python), "-m", f"mnist_regression.stages.{stage}", *overrides]
        result = subprocess.run(
            as_user_without_root(command + extra, work),
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, (
            f"{stage} under {SYSTEM_PYTHON} {version}:\n{result.stderr}"
        )
    prepared = sorted(p.name for p in (work / "prep").rglob("*.npz"))
    assert prepared, f"prepare wrote nothing under {work / 'prep'}"
    user = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert {p.stat().st_uid for p in (work / "raw").iterdir()} == {user}
