"""reports/benchmarks.{json,md,png} from the results of ``benchmarks.run``."""

from __future__ import annotations

import json
from pathlib import Path

from mnist_regression.io import atomic_write, save_json
from mnist_regression.plots import plt, save

NAMES = {
    "ours": "ours (NumPy)",
    "sklearn": "scikit-learn lbfgs",
    "torch": "PyTorch SGD",
}


def plot_race(race: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, len(race), figsize=(6 * len(race), 4.5), squeeze=False)
    for ax, (kind, entry) in zip(axes[0], race.items(), strict=True):
        for name, label in NAMES.items():
            if not entry.get(name):
                continue
            seconds, accuracy = zip(*entry[name]["trace"], strict=True)
            style = "o--" if name == "sklearn" else ".-"
            ax.plot(seconds, [100 * a for a in accuracy], style, label=label)
        ax.axhline(100 * entry["target"], color="grey", ls=":", label="target")
        ax.set_xscale("log")
        ax.set_xlabel("wall time (s), log scale")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(100 * entry["target"] - 6, 100)
        ax.set_title(f"{kind}: time to {100 * entry['target']:.1f}% test accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save(fig, path)


def fmt(stat: dict | None) -> str:
    if not stat:
        return "not reached"
    return (
        f"{stat['median']:.2f} s ({stat['min']:.2f}-{stat['max']:.2f}, n={stat['n']})"
    )


def race_lines(race: dict) -> list[str]:
    lines = [
        "| model | target | ours | scikit-learn lbfgs | PyTorch SGD "
        "| sklearn / ours | torch / ours |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, e in race.items():
        ours = e["ours"]["time_to_target"]
        ratio = {}
        for name in ("sklearn", "torch"):
            other = (e.get(name) or {}).get("time_to_target")
            ratio[name] = (
                f"{other['median'] / ours['median']:.1f}x" if other and ours else "n/a"
            )
        torch_cell = (
            fmt(e["torch"]["time_to_target"]) if e.get("torch") else "not installed"
        )
        lines.append(
            f"| {kind} | {100 * e['target']:.1f}% | {fmt(ours)} | "
            f"{fmt(e['sklearn']['time_to_target'])} | {torch_cell} | "
            f"{ratio['sklearn']} | {ratio['torch']} |"
        )
    lines.append("")
    for kind, e in race.items():
        c = e["sklearn"]["converged"]
        lines.append(
            f"- {kind}: scikit-learn converged in {c['seconds']:.2f} s "
            f"({c['iterations']} iterations) at {100 * c['test_accuracy']:.2f}% test "
            f"accuracy; our best epoch reached {100 * e['ours']['best_accuracy']:.2f}%."
        )
    return lines


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
            "| batch | bare products | our epoch | ratio "
            "| epoch with evaluation | ratio |",
            "|---|---|---|---|---|---|",
        ]
        for batch, r in results["floor"].items():
            lines.append(
                f"| {batch} | {1000 * r['floor_s']:.1f} ms | "
                f"{1000 * r['epoch_s']:.1f} ms | "
                f"{r['ratio']:.2f} | {1000 * r['epoch_with_eval_s']:.1f} ms | "
                f"{r['ratio_with_eval']:.2f} |"
            )
        lines.append("")
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
        lines += ["## Tracking overhead (1,000 full-batch epochs)", ""]
        for model, modes in results["tracking"].items():
            cells = ", ".join(
                f"{name} {row['seconds']:.2f} s ({row['overhead_pct']:+.1f}%)"
                for name, row in modes.items()
            )
            lines.append(f"- {model}: {cells}")
        lines.append("")
    if "pipeline" in results:
        p = results["pipeline"]
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in p["stages_s"].items())
        lines += [
            "## Pipeline",
            "",
            f"`dvc repro --force --single-item` per stage after `prepare`: {stages}; "
            f"{p['after_prepare_s']:.0f} s in all.",
            f"A 5-value softmax lambda multirun: {p['sweep_sequential_s']:.1f} s "
            f"sequential, {p['sweep_2_jobs_s']:.1f} s with 2 joblib jobs.",
            "",
        ]
    with atomic_write(out.with_suffix(".md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print(
        json.dumps({k: v for k, v in results.items() if k != "race"}, indent=1)[:2000]
    )
