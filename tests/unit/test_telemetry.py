"""MLflow's usage telemetry is off in the suite and in every process it starts,
also those MLflow's own CI detection would miss (started outside a test)."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = "from mlflow.telemetry.utils import is_telemetry_disabled; "
CHECK += "print(is_telemetry_disabled())"
# What MLflow takes for CI or a test run, and so turns the telemetry off for.
DETECTED = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL")


def test_a_process_the_suite_starts_sends_no_telemetry():
    env = {k: v for k, v in os.environ.items() if k not in DETECTED}
    found = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True
    )
    assert found.stdout.strip() == "True", found.stderr
