"""The server command refuses to start without an admin password of the user's."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("given", [None, ""])
def test_no_admin_password_is_one_clear_line(tmp_path, given):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_AUTH_ADMIN_PASSWORD"}
    if given is not None:
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = given
    result = subprocess.run(
        [sys.executable, "-m", "mnist_regression.tracking.server"]
        + ["--backend-store-uri", "postgresql+psycopg://u@127.0.0.1:1/db"]
        + ["--auth-db", "postgresql+psycopg://u@127.0.0.1:1/auth"]
        + ["--artifacts-destination", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in line and "--admin-password-file" in line


def test_an_unreadable_password_file_is_named(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mnist_regression.tracking.server"]
        + ["--backend-store-uri", "postgresql+psycopg://u@127.0.0.1:1/db"]
        + ["--auth-db", "postgresql+psycopg://u@127.0.0.1:1/auth"]
        + ["--artifacts-destination", str(tmp_path)]
        + ["--admin-password-file", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert str(tmp_path / "missing") in line and "Traceback" not in line


@pytest.mark.parametrize("option", ["--backend-store-uri", "--auth-db"])
def test_a_database_password_on_the_command_line_is_refused(tmp_path, option):
    uris = {
        "--backend-store-uri": "postgresql+psycopg://u@127.0.0.1:1/db",
        "--auth-db": "postgresql+psycopg://u@127.0.0.1:1/auth",
    }
    uris[option] = "postgresql+psycopg://u:secret@127.0.0.1:1/db"
    result = subprocess.run(
        [sys.executable, "-m", "mnist_regression.tracking.server"]
        + [arg for pair in uris.items() for arg in pair]
        + ["--artifacts-destination", str(tmp_path)],
        env={**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": "x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert option in line and "PGPASSFILE" in line and "secret" not in line


@pytest.mark.parametrize(
    ("location", "refused"),
    [
        (None, False),
        ("mlflow-artifacts:/team/run", False),
        ("mlflow-artifacts:/../elsewhere", True),
        ("mlflow-artifacts://other-host/x", True),
        ("file:///etc", True),
        ("/srv/mlflow", True),
        ("s3://a-bucket/x", True),
    ],
)
def test_an_experiment_keeps_its_artifacts_under_the_servers_root(location, refused):
    from mnist_regression.tracking.team_app import refusal

    assert bool(refusal(location)) is refused
