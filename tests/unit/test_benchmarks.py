"""The benchmark suite's logic (not its timings): lbfgs bisection, the report."""

import warnings

import numpy as np
import pytest

from benchmarks import report, trainers
from mnist_regression.training import Dataset

pytest.importorskip("sklearn")


def digits_like(n=600, d=20, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=0.6, size=(k, d))
    x, t = {}, {}
    for split in ("train", "val", "test"):
        t[split] = rng.integers(0, k, size=n)
        x[split] = (centers[t[split]] + rng.normal(size=(n, d))).astype(np.float32)
    return Dataset(x, t)


def accuracy_after(data, iterations):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(solver="lbfgs", max_iter=iterations, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.x["train"], data.t["train"])
    return model.score(data.x["test"], data.t["test"])


def test_lbfgs_bisection_finds_the_fewest_iterations_to_target():
    data = digits_like()
    final = accuracy_after(data, 1000)
    target = final - 0.02
    trace, summary = trainers.sklearn_lbfgs(data, target, repeats=2)
    k = summary["iterations_to_target"]
    assert k is not None and k > 1
    assert accuracy_after(data, k) >= target
    assert accuracy_after(data, k - 1) < target
    assert len(summary["seconds_to_target"]) == 2
    assert summary["test_accuracy"] == pytest.approx(final, abs=0.01)
    assert trainers.time_to(trace, target) is not None


def test_lbfgs_target_out_of_reach():
    _, summary = trainers.sklearn_lbfgs(digits_like(), target=1.01)
    assert summary["iterations_to_target"] is None
    assert summary["seconds_to_target"] == []


def stat(value):
    return {"median": value, "min": value, "max": value, "n": 1}


def test_goals_are_marked_met_or_missed():
    results = {
        "race": {
            "softmax": {
                "ours": {"time_to_target": stat(1.0)},
                "sklearn": {"time_to_target": stat(3.0)},
                "torch": {"time_to_target": stat(1.5)},
            }
        },
        "floor": {"512": {"ratio": stat(2.4)}, "full": {"ratio": stat(1.3)}},
        "tracking": {
            "softmax": {
                "metrics+artifacts": {"accounted_pct": 4.0, "overhead_pct": 12.0}
            }
        },
    }
    table = "\n".join(report.goal_lines(results))
    assert "| softmax to 91.5%: 5x faster than lbfgs | 3.0x | missed |" in table
    assert "| softmax: not slower than PyTorch | 1.50x | met |" in table
    assert "batch 512 | 2.40 (2.40-2.40) | missed |" in table
    assert "batch full | 1.30 (1.30-1.30) | met |" in table
    assert (
        "| tracking overhead under 10%, softmax "
        "| +4.0% in tracking code, +12.0% wall time | met |"
    ) in table
