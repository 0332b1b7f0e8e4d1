"""reports/benchmarks.{json,md,png} from the results of ``benchmarks.run``."""

from __future__ import annotations

import json
from pathlib import Path

from mnist_regression.common.io import atomic_write, save_json
from mnist_regression.figures.drawing import save, subplots

PARTS = [
    "race",
    "floor",
    "profile",
    "scaling",
    "tracking",
    "sweep",
    "pipeline",
]
NAMES = {
    "ours": "ours (NumPy), default config",
    "ours_plain": "ours (NumPy), plain steps at lr {lr:.3g}",
    "sklearn": "scikit-learn lbfgs",
    "torch": "PyTorch SGD",
}


def plot_race(race: dict, path: Path) -> None:
    fig, axes = subplots(1, len(race), figsize=(6 * len(race), 4.5), squeeze=False)
    for ax, (kind, entry) in zip(axes[0], race.items(), strict=True):
        for name, label in NAMES.items():
            if not entry.get(name):
                continue
            seconds, accuracy = zip(*entry[name]["trace"], strict=True)
            style = {"sklearn": "o--", "ours_plain": ".:"}.get(name, ".-")
            label = label.format(lr=entry[name].get("lr", 0))
            ax.plot(seconds, [100 * a for a in accuracy], style, label=label)
        ax.axhline(100 * entry["target"], color="grey", ls=":", label="target")
        ax.set_xscale("log")
        ax.set_xlabel("wall time (s), log scale")
        ax.set_ylabel("test accuracy (%)")
        best = max(
            accuracy
            for name in NAMES
            if entry.get(name)
            for _, accuracy in entry[name]["trace"]
        )
        ax.set_ylim(100 * entry["target"] - 6, min(100, 100 * best + 1))
        ax.set_title(f"{kind}: time to {100 * entry['target']:.1f}% test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    save(fig, path)


def fmt(stat: dict | None) -> str:
    if not stat:
        return "not reached"
    return (
        f"{stat['median']:.2f} s ({stat['min']:.2f}-{stat['max']:.2f}, n={stat['n']})"
    )


def spread(stat: dict) -> str:
    return f"{stat['median']:.2f} ({stat['min']:.2f}-{stat['max']:.2f})"


def speedup(other: dict | None, ours: dict | None) -> float | None:
    """How many times faster ours is, from two time-to-target summaries."""
    if not other or not ours:
        return None
    return other["median"] / ours["median"]


def ratio(other: dict | None, ours: dict | None) -> str:
    times = speedup(other, ours)
    return "n/a" if times is None else f"{times:.1f}x"


def race_lines(race: dict) -> list[str]:
    lines = [
        "| model | target | ours | scikit-learn lbfgs | PyTorch SGD "
        "| sklearn / ours | torch / ours | ours, plain steps | plain / ours |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, e in race.items():
        ours = e["ours"]["time_to_target"]
        sklearn = e["sklearn"]["time_to_target"]
        torch = (e.get("torch") or {}).get("time_to_target")
        plain = e["ours_plain"]
        torch_cell = fmt(torch) if e.get("torch") else "not installed"
        lines.append(
            f"| {kind} | {100 * e['target']:.1f}% | {fmt(ours)} | {fmt(sklearn)} | "
            f"{torch_cell} | {ratio(sklearn, ours)} | {ratio(torch, ours)} | "
            f"lr {plain['lr']:.3g}: {fmt(plain['time_to_target'])}, "
            f"reached {plain['reached']} | "
            f"{ratio(plain['time_to_target'], ours)} |"
        )
    lines.append("")
    for kind, e in race.items():
        c = e["sklearn"]["converged"]
        lines.append(
            f"- {kind}: scikit-learn first reached the target after "
            f"{c['iterations_to_target']} lbfgs iterations and converged in "
            f"{c['seconds']:.2f} s ({c['iterations']} iterations) at "
            f"{100 * c['test_accuracy']:.2f}% test accuracy; our best epoch reached "
            f"{100 * e['ours']['best_accuracy']:.2f}%."
        )
    return lines


# The suite's targets: (what, the threshold, whether the measure must be above it)
GOALS = {
    "clone": ("`make run` on a fresh clone, in seconds", 60.0, "below"),
    "race": ("softmax to 91.5% at the defaults: faster than lbfgs", 5.0, "above"),
    "torch": ("softmax to 91.5%: not slower than PyTorch", 1.0, "above"),
    "sweep": ("tracked 5-run sweep, over the same sweep untracked", 1.5, "below"),
    "single": ("one default run tracked, over the same run untracked", 1.5, "below"),
    "wall": ("the study's wall time, over its training arithmetic", 1.2, "below"),
    "iteration": (
        "full-batch iteration with evaluation, over the naive products",
        0.8,
        "below",
    ),
    "512": ("epoch at batch 512, over the products and the gather", 1.5, "below"),
}


def goals(results: dict) -> list[tuple[str, str, float, str, bool]]:
    """(name in GOALS, goal, measured median, how it reads, met) for each goal
    measured."""
    measured: dict[str, tuple[float, str]] = {}
    race = results.get("race", {}).get("softmax")
    if race:
        for name, key in (("race", "sklearn"), ("torch", "torch")):
            mine = (race.get("ours") or {}).get("time_to_target")
            times = speedup((race.get(key) or {}).get("time_to_target"), mine)
            if times is not None:
                measured[name] = (times, f"{times:.1f}x")
    floor = results.get("floor", {})
    if "iteration" in floor:
        measured["iteration"] = (
            floor["iteration"]["ratio"]["median"],
            spread(floor["iteration"]["ratio"]),
        )
    if "512" in floor:
        ratio_512 = floor["512"]["ratio_with_gather"]
        measured["512"] = (ratio_512["median"], spread(ratio_512))
    sweep = results.get("sweep", {})
    for name, key in (("sweep", "ratio"), ("single", "single_ratio")):
        if key in sweep:
            measured[name] = (sweep[key]["median"], spread(sweep[key]))
    pipeline = results.get("pipeline", {})
    if "make_run_s" in pipeline:
        measured["clone"] = (pipeline["make_run_s"], f"{pipeline['make_run_s']:.0f} s")
        ratio = pipeline["study_s"] / pipeline["arithmetic_s"]
        measured["wall"] = (ratio, f"{ratio:.2f}")
    rows = []
    for name, (value, shown) in measured.items():
        what, threshold, side = GOALS[name]
        met = value >= threshold if side == "above" else value <= threshold
        rows.append((name, f"{what}: {side} {threshold:g}", value, shown, met))
    return rows


def why_missed(name: str, results: dict) -> str:
    """For a missed goal: what the measurements say it is made of, and the next
    step; '' where the suite has nothing to add."""
    pipeline, sweep = results.get("pipeline", {}), results.get("sweep", {})
    if name == "clone" and pipeline:
        return (
            f"set-up {pipeline['setup_s']:.0f} s, data {pipeline['data_s']:.0f} s, "
            f"the study {pipeline['study_s']:.0f} s of which "
            f"{pipeline['arithmetic_s']:.0f} s of training arithmetic on 2 cores, "
            f"{pipeline.get('seed_arithmetic_s', float('nan')):.0f} s of it in the "
            "seed study's presets: full-batch gradient descent for the 1,000 to "
            "15,000 iterations the seed ran, each a pass over the training set and "
            "an evaluation of every split, which alone keeps 2 cores busy for "
            "half of that. Next: the seed presets' test split evaluated every "
            "10th step instead of each (its curves thinned, their numbers "
            "unchanged), and the long seed runs started first in one multirun"
        )
    if name == "wall" and pipeline:
        return (
            f"{pipeline['study_s'] - pipeline['arithmetic_s']:.0f} s beyond the "
            "arithmetic: per stage, DVC's start and its hashing of the outputs, "
            "and in every process Python, Hydra and MLflow's import and store. "
            "Next: MLflow off the training path (a writer process), fewer stages "
            "(one multirun for the grids that share a model)"
        )
    if name in ("sweep", "single") and "fixed" in sweep:
        fixed = sweep["fixed"]
        paid = sum(fixed.values())
        untracked = sweep["untracked_s" if name == "sweep" else "single_untracked_s"]
        whole = "sweep" if name == "sweep" else "run"
        return (
            f"a tracked process pays {paid:.1f} s once (MLflow's import "
            f"{fixed['mlflow_import_s']:.2f} s, the store "
            f"{fixed['store_open_s']:.2f} s, the package scan before a logged "
            f"model {fixed['package_scan_s']:.2f} s) against "
            f"{untracked['median']:.2f} s for the whole untracked {whole}. "
            "Next: a writer process started before training's imports, fed by "
            "a queue"
        )
    race = results.get("race", {}).get("softmax")
    if name == "race" and race and race["ours"].get("trace"):
        trace, target = race["ours"]["trace"], race["target"]
        start = trace[0][0]
        reached = next((i for i, (_, acc) in enumerate(trace) if acc >= target), None)
        epochs = f"at its evaluation after epoch {reached}" if reached else "never"
        return (
            f"ours reaches {100 * target:.1f}% {epochs} (first repeat); "
            f"{start:.2f} s pass before its first evaluation (the rate from the "
            "curvature, the passes' copies of the data as bytes, the evaluation "
            "at w = 0), and each epoch with its evaluation of every split takes "
            f"{(trace[-1][0] - start) / max(len(trace) - 1, 1):.3f} s. Next: "
            "the prepared data stored as bytes, so that no run converts it"
        )
    return ""


def goal_lines(results: dict) -> list[str]:
    rows = goals(results)
    lines = [
        "| goal | measured | |",
        "|---|---|---|",
        *(
            f"| {goal} | {shown} | {'met' if met else 'missed'} |"
            for _, goal, _, shown, met in rows
        ),
    ]
    reasons = [(g, why_missed(n, results)) for n, g, _, _, met in rows if not met]
    reasons = [(goal, why) for goal, why in reasons if why]
    if reasons:
        lines += ["", "Missed, and why:", ""]
        lines += [f"- {goal.split(':')[0]}: {why}." for goal, why in reasons]
    return lines


SUMMARY_START = "<!-- benchmark summary: written by python -m benchmarks.run -->"
SUMMARY_END = "<!-- end of benchmark summary -->"


def performance_summary(results: dict) -> list[str]:
    """The figures of docs/performance.md, generated from the benchmark results."""
    lines = [
        f"Measured by `make bench` on {results['machine']['cpu']} "
        f"({results['machine']['cores']} cores); details in "
        "[`reports/benchmarks.md`](../reports/benchmarks.md).",
        "",
    ]
    for _, goal, _, shown, met in goals(results):
        lines.append(f"- {goal}: {shown}, {'met' if met else 'missed'}.")
    pipeline = results.get("pipeline")
    if pipeline and pipeline.get("make_run_s"):
        lines.append(
            f"- `make run` on a fresh clone: {pipeline['make_run_s']:.0f} s (set-up "
            f"{pipeline['setup_s']:.0f} s, data {pipeline['data_s']:.0f} s, the "
            f"study {pipeline['study_s']:.0f} s for {pipeline['arithmetic_s']:.0f} s "
            "of training arithmetic, the runs' `train_seconds`); "
            f"{pipeline['jobs_copied']} jobs copied from another stage, not trained."
        )
    sweep = results.get("sweep")
    if sweep:
        fixed = sweep["fixed"]
        lines.append(
            f"- A tracked process pays once: importing MLflow "
            f"{fixed['mlflow_import_s']:.2f} s, opening the SQLite store "
            f"{fixed['store_open_s']:.2f} s, MLflow's scan of the installed "
            f"packages before it logs a model {fixed['package_scan_s']:.2f} s; "
            f"the untracked 5-run sweep takes {sweep['untracked_s']['median']:.2f} s "
            "in all."
        )
    return lines


def update_summary(results: dict, page: Path) -> None:
    """Rewrite the block of ``page`` between the markers from ``results``."""
    text = page.read_text()
    head, rest = text.split(SUMMARY_START, 1)
    _, tail = rest.split(SUMMARY_END, 1)
    block = "\n".join([SUMMARY_START, *performance_summary(results), SUMMARY_END])
    with atomic_write(page, "w") as handle:
        handle.write(head + block + tail)


def write_report(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    save_json(out.with_suffix(".json"), results)
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m benchmarks.run`; numbers are medians with the "
        "min-max spread. Machine: "
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, NumPy {m['numpy']} "
        f"with {', '.join(m['blas'])}.",
        "",
    ]
    measured = results.get("measured", {})
    if measured:
        dates = ", ".join(
            f"{part} {measured[part]}" for part in PARTS if part in measured
        )
        lines += [f"Measured: {dates}.", ""]
    lines += ["## Goals", "", *goal_lines(results), ""]
    if "race" in results:
        plot_race(results["race"], out.with_suffix(".png"))
        lines += [
            "## Time to accuracy",
            "",
            *race_lines(results["race"]),
            "",
            f"![time to accuracy]({out.with_suffix('.png').name})",
            "",
        ]
    if "floor" in results:
        lines += [
            "## Against the hardware floor (softmax, 18,000 images)",
            "",
            "Bare products: the forward and backward matrix products of one epoch, "
            "timed alone (best of 3). Gather: the copy of each shuffled batch out "
            "of the training set, timed alone (best of 3). Our epoch: the median "
            "epoch of a 5-epoch run, less one evaluation of every split. Each "
            "repeat times the floor and the epoch back to back; ratios are the "
            "median (min-max) of those pairs.",
            "",
            "| batch | bare products | gather | our epoch | ratio to products "
            "| ratio to products + gather | epoch with evaluation | ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for batch, r in results["floor"].items():
            if batch == "iteration":
                continue
            lines.append(
                f"| {batch} | {1000 * r['floor_s']:.1f} ms | "
                f"{1000 * r['gather_s']:.1f} ms | {1000 * r['epoch_s']:.1f} ms | "
                f"{spread(r['ratio'])} | {spread(r['ratio_with_gather'])} | "
                f"{1000 * r['epoch_with_eval_s']:.1f} ms | "
                f"{spread(r['ratio_with_eval'])} |"
            )
        lines.append("")
        if "iteration" in results["floor"]:
            it = results["floor"]["iteration"]
            lines += [
                "Full-batch iteration with the evaluation of every split (fused, "
                f"threaded): {1000 * it['iteration_s']:.1f} ms, against "
                f"{1000 * it['naive_s']:.1f} ms for the naive products alone "
                "(training logits and gradient, validation and test logits), ratio "
                f"{spread(it['ratio'])}.",
                "",
            ]
    if "profile" in results:
        prof = results["profile"]
        lines += [
            f"## Where an epoch's time goes (batch {prof['batch']}, "
            f"{prof['epochs']} epochs, pyinstrument)",
            "",
            "What was found, what was changed and what was tried: "
            "[benchmarks/README.md](../benchmarks/README.md#where-the-time-goes-and-"
            "what-was-changed). In the tree, `[self]` of `_descend` is the gather of "
            "each shuffled batch (`x[idx]`), `[self]` of `logits` the forward "
            "product, and `[self]` of `gradients` the backward product.",
            "",
            "```",
            prof["call_tree"].strip("\n"),
            "```",
            "",
        ]
    if "scaling" in results:
        s = results["scaling"]
        cells = ", ".join(
            f"{n:,}: {1000 * t:.0f} ms"
            for n, t in zip(s["sizes"], s["epoch_s"], strict=True)
        )
        lines += [
            "## Scaling",
            "",
            f"Epoch time by training set size: {cells}. "
            f"Slope {s['ms_per_1000_images']:.2f} ms per 1,000 images, "
            f"R^2 = {s['r2']:.4f}.",
            "",
        ]
    if "tracking" in results:
        lines += [
            "## Tracking overhead (1,000 full-batch epochs)",
            "",
            "Wall time: median (min-max) of the repeats; the overhead is the median "
            "of each repeat's ratio to the untracked run of the same repeat. In "
            "tracking code: the time inside the MLflow calls and the drawing of the "
            "artifacts, over the rest of the same run.",
            "",
            "| model | mode | wall time | overhead | in tracking code | overhead |",
            "|---|---|---|---|---|---|",
        ]
        for model, modes in results["tracking"].items():
            for name, row in modes.items():
                low, high = row["spread"]
                lines.append(
                    f"| {model} | {name} | {row['seconds']:.2f} s "
                    f"({low:.2f}-{high:.2f}) | {row['overhead_pct']:+.1f}% | "
                    f"{row['tracking_s']:.2f} s | {row['accounted_pct']:+.1f}% |"
                )
        lines.append("")
    if "sweep" in results:
        sw = results["sweep"]
        fixed = ", ".join(
            f"{k[:-2].replace('_', ' ')} {v:.2f} s" for k, v in sw["fixed"].items()
        )
        lines += [
            "## A tracked sweep",
            "",
            "`python -m mnist_regression.train -m model=logistic "
            "model.l2=0,0.001,0.01,0.1,1` as a whole process, tracked (metrics, "
            "artifacts, models, into an existing SQLite store) and untracked, in "
            f"turns: {fmt(sw['tracked_s'])} against {fmt(sw['untracked_s'])}, "
            f"ratio {spread(sw['ratio'])}. Paid once by any process that records "
            f"runs, measured in a fresh interpreter: {fixed}.",
            "",
        ]
    if "pipeline" in results and "make_run_s" in results["pipeline"]:
        p = results["pipeline"]
        lines += [
            "## `make run` on a fresh clone",
            "",
            f"A `git clone` of this commit, every process with "
            f"`PYTHONDONTWRITEBYTECODE=1`: set-up {p['setup_s']:.1f} s, "
            f"`dvc repro prepare` {p['data_s']:.1f} s, `make run` {p['study_s']:.1f} s "
            f"({p['arithmetic_s']:.1f} s of it training arithmetic, the sum of the "
            f"runs' `train_seconds`; {p['jobs_copied']} jobs copied from another "
            f"stage): {p['make_run_s']:.0f} s in all.",
            "",
        ]
    if "single_ratio" in results.get("sweep", {}):
        sw = results["sweep"]
        lines += [
            f"One default logistic run as a process: {fmt(sw['single_tracked_s'])} "
            f"tracked, {fmt(sw['single_untracked_s'])} untracked, ratio "
            f"{spread(sw['single_ratio'])}.",
            "",
        ]
    with atomic_write(out.with_suffix(".md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print(
        json.dumps({k: v for k, v in results.items() if k != "race"}, indent=1)[:2000]
    )
