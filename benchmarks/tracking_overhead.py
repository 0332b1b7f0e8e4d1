"""Wall time of a 1,000-epoch run with MLflow tracking against the same run without.

Usage: ``python -m benchmarks.tracking_overhead [--repeats 3]`` from the project
root after ``dvc repro prepare``. Runs go to a throwaway SQLite store. Reports, for
no tracking, metrics and params only, and metrics with the artifacts (weight
images, model): the wall time of the run as a single run of the app makes it
(training, and beside it the recorder that writes MLflow from the run's folder),
and the time the run waits on the recorder (for the store to open before
training, for the last records after it).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from mnist_regression.app.run import run_training
from mnist_regression.common.config import load_params, train_config
from mnist_regression.tracking.recorder import Recorder

MODES = {
    "off": {"tracking.enabled": False},
    "metrics": {"tracking.enabled": True, "tracking.artifacts": False},
    "metrics+artifacts": {"tracking.enabled": True, "tracking.artifacts": True},
}


def configure(model: str, store: Path, mode: dict) -> OmegaConf:
    params = load_params()
    overrides = {
        "model.name": model,
        "optimizer.lr": 0.01,
        "optimizer.batch_size": None,
        "optimizer.anneal_k": 0.0,
        "optimizer.max_epochs": 1000,
        "optimizer.patience": 1000,
        "progress": False,
        "tracking.uri": f"sqlite:///{store / 'mlflow.db'}",
        **mode,
    }
    for key, value in overrides.items():
        OmegaConf.update(params, key, value)
    return train_config(params)


class Stopwatch:
    """Time a run waits on its recorder: for the store to open before training,
    and for the last records after it, summed by wrapping them for the duration
    of a measurement."""

    TARGETS = [(Recorder, "wait_ready"), (Recorder, "finish")]

    def __init__(self) -> None:
        self.seconds = 0.0
        self.depth = 0

    def wrap(self, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self.depth += 1
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:  # a nested call is counted once
                    self.seconds += time.perf_counter() - start

        return timed

    def __enter__(self) -> Stopwatch:
        self.saved = [
            (owner, name, getattr(owner, name)) for owner, name in self.TARGETS
        ]
        for owner, name, function in self.saved:
            setattr(owner, name, self.wrap(function))
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, function in self.saved:
            setattr(owner, name, function)


def tracked_run(cfg, out: Path, label: str) -> None:
    """``run_training`` as the app runs a single run: with its recorder beside
    it when tracking is on (``app.job.recorded``)."""
    if not cfg.tracking.enabled:
        run_training(cfg, out, label)
        return
    recorder = Recorder(cfg.tracking, [out]).start()
    try:
        run_training(cfg, out, label, ready=recorder.wait_ready)
    finally:
        recorder.finish()


def measure(models: list[str], repeats: int) -> dict:
    """Overhead of each mode against tracking off, two ways.

    Wall time: the modes take turns within each repeat, in rotating order, and
    the overhead is the median over repeats of each mode's time over the same
    repeat's untracked time (a shared machine drifts in speed from minute to
    minute). Accounted: the time spent inside the tracking code itself, over the
    rest of the same run.
    """
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        tracked_run(
            configure("logistic", store, MODES["metrics"]), store / "out", "warm-up"
        )
        for model in models:
            seconds: dict[str, list[float]] = {name: [] for name in MODES}
            inside: dict[str, list[float]] = {name: [] for name in MODES}
            names = list(MODES)
            for repeat in range(repeats):
                # Each repeat rotates the order: a machine that slows down within
                # a repeat does not always penalise the same mode.
                for name in names[repeat % 3 :] + names[: repeat % 3]:
                    cfg = configure(model, store, MODES[name])
                    with Stopwatch() as stopwatch:
                        start = time.perf_counter()
                        tracked_run(cfg, store / "out", name)
                        seconds[name].append(time.perf_counter() - start)
                    inside[name].append(stopwatch.seconds)
            off = seconds["off"]
            results[model] = {
                name: {
                    "seconds": statistics.median(times),
                    "spread": [min(times), max(times)],
                    "overhead_pct": 100
                    * statistics.median(
                        t / o - 1 for t, o in zip(times, off, strict=True)
                    ),
                    "tracking_s": statistics.median(inside[name]),
                    "accounted_pct": 100
                    * statistics.median(
                        i / (t - i) for t, i in zip(times, inside[name], strict=True)
                    ),
                }
                for name, times in seconds.items()
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["logistic", "softmax"])
    args = parser.parse_args()
    for model, modes in measure(args.models, args.repeats).items():
        for name, row in modes.items():
            print(
                f"{model:9s} {name:18s} {row['seconds']:7.2f} s  "
                f"{row['overhead_pct']:+6.1f} %  in tracking {row['tracking_s']:.2f} s "
                f"({row['accounted_pct']:+.1f} %)"
            )


if __name__ == "__main__":
    main()
