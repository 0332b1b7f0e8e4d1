"""results.md opens with "In brief": every number in it read from details."""

from __future__ import annotations

import json

from mnist_regression.study.brief import in_brief

from ..conftest import REPO_ROOT


def row(val: float, last: float) -> dict:
    return {
        "val_accuracy": val,
        "val_images": 2000,
        "test_accuracy_last": last,
        "test_images_last": 2000,
        "test_accuracy": 0.9,
        "test_images": 10000,
    }


def lambda_test(second: str, only_first: int, only_second: int, p_holm: float):
    return {
        "first": "lambda 0",
        "second": f"lambda {second}",
        "only_first": only_first,
        "only_second": only_second,
        "p": p_holm,
        "p_holm": p_holm,
    }


def details() -> dict:
    """The committed details, with the parts under test replaced."""
    found = json.loads((REPO_ROOT / "reports" / "details.json").read_text())
    found["protocols"]["softmax"] = {
        "protocol A": row(0.8800, 0.9150),  # 1,760 and 1,830: both in range
        "protocol B": row(0.8600, 0.9200),  # 1,720: short; 1,840: in range
    }
    found["paired"] = {
        "10 digits: lambdas": {
            "stage": "softmax_l2",
            "task": "10 digits",
            "tests": [
                lambda_test("0.01", 10, 12, 0.8),
                lambda_test("0.1", 5, 60, 0.001),
                lambda_test("1", 300, 20, 1e-9),
            ],
        },
        "10 digits: readings": {"stage": None, "task": "10 digits", "tests": []},
    }
    found["logistic_anneal"] = {
        "anneal_k=0": {"test_accuracy": 1990 / 2042, "epochs_run": 30},
        "anneal_k=0.001": {"test_accuracy": 1993 / 2042, "epochs_run": 25},
    }
    return found


def test_the_brief_reads_every_number_from_the_details():
    lines = in_brief(details())
    assert lines[0] == "## In brief" and len(lines) <= 12
    text = "\n".join(lines)
    committed = json.loads((REPO_ROOT / "reports" / "details.json").read_text())
    mean = committed["logistic"]["test_accuracy"]["mean"]
    assert f"**2 vs 3** {100 * mean:.2f}% of 2,042 test images" in text
    assert "10 digits validation about 88%: protocol A (within its rounding)" in text
    assert "10 digits test about 92%: protocol A and protocol B" in text
    assert "lambda 0.01 cannot be told from 0" in text
    assert "0.1 classify better" in text and "1 classify worse" in text
    assert "1,993 against 1,990 of 2,042 test images correct, 3 images apart" in text


def test_results_md_opens_with_the_brief():
    report = (REPO_ROOT / "reports" / "results.md").read_text().splitlines()
    first_section = next(line for line in report if line.startswith("## "))
    assert first_section == "## In brief"
