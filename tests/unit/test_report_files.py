"""The committed report reads wherever the repository is read (GitHub, a fresh
clone): every image it links is a file git tracks."""

from __future__ import annotations

import re
import subprocess

from ..conftest import REPO_ROOT

REPORT = REPO_ROOT / "reports" / "results.md"


def test_every_image_the_report_links_is_tracked_by_git():
    text = REPORT.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", text)
    links += re.findall(r'<img[^>]*\ssrc="([^"]+)"', text)
    assert len(links) >= 10, links
    tracked = set(
        subprocess.run(
            ["git", "ls-files", "reports"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    )
    paths = [(REPORT.parent / link).resolve().relative_to(REPO_ROOT) for link in links]
    missing = [str(p) for p in paths if str(p) not in tracked]
    assert not missing, f"linked by results.md, not in git: {missing}"
