"""A DVC remote on S3: push from one clone, pull into a fresh one.

The S3 endpoint is moto's server on 127.0.0.1; the remote is added as a user adds
any S3-compatible store (`dvc remote add`, `endpointurl`), with the keys in
`.dvc/config.local` (`dvc remote modify --local`), never in git.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from .conftest import BIN, HANG, free_port, point_download_at, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY_ID, SECRET = "project-key-id", "project-secret-key"


@pytest.fixture
def s3():
    """An S3-compatible endpoint on loopback with one bucket; yields its URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    ).create_bucket(Bucket="study")
    yield url
    server.stop()


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def add_remote(repo: Path, url: str) -> None:
    """The README's commands: the remote in .dvc/config, the keys local."""
    run(["dvc", "remote", "add", "-d", "storage", "s3://study/cache"], repo)
    run(["dvc", "remote", "modify", "storage", "endpointurl", url], repo)
    for option, value in (("access_key_id", KEY_ID), ("secret_access_key", SECRET)):
        run(["dvc", "remote", "modify", "--local", "storage", option, value], repo)


def test_push_then_pull_into_a_fresh_clone(repo_copy, npm_raw_dir, s3, tmp_path):
    repo = repo_copy
    point_download_at(repo, npm_raw_dir)
    run(["dvc", "repro", "prepare"], repo)
    add_remote(repo, s3)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "prepared data, S3 remote"], repo)
    config = (repo / ".dvc" / "config").read_text()
    assert s3 in config and KEY_ID not in config and SECRET not in config
    tracked = run(["git", "ls-files", ".dvc"], repo).stdout.split()
    assert ".dvc/config.local" not in tracked
    pushed = run(["dvc", "push"], repo)
    assert "pushed" in pushed.stdout

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    # the keys come with each clone's local config, or from AWS_* variables
    run(
        ["dvc", "pull", "download", "prepare"],
        clone,
        AWS_ACCESS_KEY_ID=KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
    )
    for folder in ("data/raw", "data/prepared"):
        assert digests(clone / folder) == digests(repo / folder), folder
    again = run(["dvc", "repro", "prepare"], clone)
    assert "Stage 'prepare' didn't change, skipping" in again.stdout
    assert run(["git", "status", "--porcelain"], clone).stdout == ""


def push_error(repo: Path, url: str, checking=contextlib.nullcontext) -> str:
    """`dvc push` of a small file to the remote at ``url`` (with ``checking``
    around it), expected to fail: its one ERROR line, with no traceback."""
    (repo / "note.txt").write_text("a file to push\n")
    run(["dvc", "add", "note.txt"], repo)
    add_remote(repo, url)
    # botocore and s3fs retry a refused connection for minutes by default; the
    # README's AWS_MAX_ATTEMPTS=1 makes it one attempt
    with checking():
        result = subprocess.run(
            [str(BIN / "dvc"), "push"],
            cwd=repo,
            capture_output=True,
            text=True,
            env={**os.environ, "AWS_MAX_ATTEMPTS": "1"},
            timeout=HANG,
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if "ERROR" in line]
    return error


def test_an_unreachable_endpoint_is_one_clear_error(repo_copy):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    error = push_error(repo_copy, url)
    assert "Could not connect to the endpoint URL" in error
    assert url in error, error


def test_wrong_credentials_are_one_clear_error(repo_copy, s3):
    """With the store checking keys (moto's IAM), keys it does not know (those of
    ``add_remote``) are refused in one line that says so."""
    from moto.core.authorization import enable_iam_authentication

    error = push_error(repo_copy, s3, enable_iam_authentication)
    assert "Forbidden" in error and "(403)" in error, error
