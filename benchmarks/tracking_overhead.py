"""Wall time of a 1,000-epoch run with MLflow tracking against the same run without.

Usage: ``python -m benchmarks.tracking_overhead [--repeats 3]`` from the project
root after ``dvc repro prepare``. Runs go to a throwaway SQLite store. Reports the
median of the repeats for: no tracking, metrics and params only, and metrics with
the artifacts (weight images, curves).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from mnist_regression.config import load_params, train_config
from mnist_regression.run import run_training

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


def measure(models: list[str], repeats: int) -> dict:
    """Median seconds per mode and model, and the overhead against tracking off."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        run_training(configure("logistic", store, MODES["metrics"]))  # warm-up
        for model in models:
            # Modes take turns within each repeat, so a slow spell of the machine
            # falls on all of them rather than on one.
            samples: dict[str, list[float]] = {name: [] for name in MODES}
            for _ in range(repeats):
                for name, mode in MODES.items():
                    cfg = configure(model, store, mode)
                    start = time.perf_counter()
                    run_training(cfg)
                    samples[name].append(time.perf_counter() - start)
            times = {name: statistics.median(s) for name, s in samples.items()}
            results[model] = {
                name: {
                    "seconds": t,
                    "spread": [min(samples[name]), max(samples[name])],
                    "overhead_pct": 100 * (t / times["off"] - 1),
                }
                for name, t in times.items()
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
                f"{row['overhead_pct']:+6.1f} %"
            )


if __name__ == "__main__":
    main()
