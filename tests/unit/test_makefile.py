"""What the README's two commands install: ``make run`` the study's packages
alone, ``make test`` the test tools besides."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ..conftest import REPO_ROOT


def make(*args: str) -> str:
    """``make``'s output for ``args``, run so that it executes no recipe (the
    targets named never contain a recursive ``$(MAKE)``, which -n would run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(
        ["make", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    ).stdout


def test_make_run_installs_no_test_tool():
    commands = make("-n", "-B", "run")
    assert " sync " in commands
    assert "--extra" not in commands
    assert "dvc repro" in commands


def test_make_test_adds_the_test_tools():
    rules = make("-p", "-q", ".venv/.installed")  # the rules, nothing built
    (prerequisites,) = re.findall(r"^test: (.*)$", rules, re.MULTILINE)
    stamps = prerequisites.split()
    assert stamps, "make test depends on no installed environment"
    syncs = [line for s in stamps for line in make("-n", "-B", s).splitlines()]
    assert any(" sync " in line and "--extra dev" in line for line in syncs), syncs
