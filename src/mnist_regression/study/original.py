"""Our runs against the seed study's published numbers, with their noise.

The seed study reports accuracies without saying on which images it tested. Its
98.77% for 2 vs 3 is 400 of the 405 twos and threes among the last 2,000 test
images, so we read it as testing on those (``LAST_N``); both test sets are shown.
Every accuracy carries a 95% Wilson interval for the size of its set; the study's
numbers are "within the noise" of ours when they fall inside that interval,
widened by the study's own rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from ..app.results import Job

LAST_N = 2000
# The study reproduced here, as results.md cites it.
CITATION = (
    "assignment 1 of TDT4265 Computer Vision and Deep Learning (NTNU, 2019), "
    "its report and its authors' code, "
    "[jakoblover/TDT4265-Computer-Vision-and-Deep-Learning]"
    "(https://github.com/jakoblover/TDT4265-Computer-Vision-and-Deep-Learning), "
    "folder `Assignment 1`"
)
# What the seed study reported (its write-up; not computed here): the value and
# how far its rounding may hide the exact one ("about 88%": +-0.5 points).
SEED_STUDY = {
    "logistic": {"test_accuracy_last": (0.9877, 0.00005)},
    "softmax": {"val_accuracy": (0.88, 0.005), "test_accuracy_last": (0.92, 0.005)},
}
COMPARED = {  # key in our accuracies -> what the study's number is
    "val_accuracy": "validation",
    "test_accuracy_last": f"test, last {LAST_N:,}",
}
TASK = {"logistic": "2 vs 3", "softmax": "10 digits"}
PAIRED_ALPHA = 0.05  # Holm-adjusted significance of a paired test
SET_SIZE = {  # accuracy key -> key of the size of the set it was measured on
    "val_accuracy": "val_images",
    "test_accuracy": "test_images",
    "test_accuracy_last": "test_images_last",
}


def wilson(accuracy: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy measured on ``n`` images."""
    ci = binomtest(round(accuracy * n), n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def printed(study: tuple[float, float]) -> str:
    """A number of the seed study as it printed it: "98.77%", "about 88%"."""
    value, rounding = study
    return f"about {100 * value:.0f}%" if rounding >= 0.005 else pct(value)


def with_interval(accuracy: float, n: int) -> str:
    low, high = wilson(accuracy, n)
    return f"{pct(accuracy)} ({100 * low:.1f}-{100 * high:.1f})"


def within_noise(ours: float, n: int, study: tuple[float, float]) -> bool:
    value, rounding = study
    low, high = wilson(ours, n)
    return value + rounding >= low and value - rounding <= high


# A verdict that a shift this small (in accuracy) would turn is called borderline.
BORDERLINE = 0.0005


def borderline(ours: float, n: int, study: tuple[float, float]) -> bool:
    """Whether the study's range and our interval meet or miss by less than
    ``BORDERLINE``: "within the noise" then hinges on the third decimal."""
    value, rounding = study
    low, high = wilson(ours, n)
    gaps = (low - (value + rounding), (value - rounding) - high)
    return any(abs(gap) < BORDERLINE for gap in gaps)


def noise_word(ours: float, n: int, study: tuple[float, float]) -> str:
    inside = "yes" if within_noise(ours, n, study) else "no"
    return f"{inside} (borderline)" if borderline(ours, n, study) else inside


def accuracies(job: Job, data: Mapping[str, np.ndarray], n_test_file: int) -> dict:
    """Validation accuracy, test accuracy on all test images and on the last
    ``LAST_N`` of the test file, with the size of each set."""
    correct = job.model.predict(data["x_test"]) == data["t_test"]
    last = data["index_test"] >= n_test_file - LAST_N
    return {
        "val_accuracy": job.metrics["final_val_accuracy"],
        "test_accuracy": float(correct.mean()),
        "test_accuracy_last": float(correct[last].mean()),
        "val_images": len(data["t_val"]),
        "train_images": len(data["t_train"]),
        "test_images": len(correct),
        "test_images_last": int(last.sum()),
        "epochs_run": job.metrics["epochs_run"],
        "best_epoch": job.metrics["best_epoch"],
    }


def size(row: Mapping, key: str) -> int:
    return row[SET_SIZE[key]]


def over_seeds(rows: list[dict]) -> dict:
    """Mean and standard deviation (ddof 1) of each accuracy over the seeds."""
    summary = {"seeds": len(rows)}
    for key in SET_SIZE:
        values = np.array([row[key] for row in rows])
        summary[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1))}
    for key in SET_SIZE.values():
        summary[key] = rows[0][key]
    return summary


def reading(job: Job) -> str:
    batch = job.config["optimizer"]["batch_size"]
    return {None: "full batch", 1: "one example"}.get(batch, f"batch {batch}")


@dataclass
class Reading:
    name: str
    job: Job
    row: dict

    @property
    def steps(self) -> int:
        """The gradient steps the run took: its epochs times the mini-batches of
        an epoch, up to ``max_steps``."""
        opt = self.job.config["optimizer"]
        n = self.row["train_images"]
        per_epoch = -(-n // (opt["batch_size"] or n))
        taken = self.row["epochs_run"] * per_epoch
        return min(taken, opt["max_steps"]) if opt["max_steps"] else taken

    def within(self, model: str) -> bool:
        return all(
            within_noise(self.row[key], size(self.row, key), study)
            for key, study in SEED_STUDY[model].items()
        )

    def noise(self, model: str) -> str:
        """yes / no, and "borderline" where any number's verdict is."""
        words = [
            noise_word(self.row[key], size(self.row, key), study)
            for key, study in SEED_STUDY[model].items()
        ]
        inside = "yes" if self.within(model) else "no"
        return (
            f"{inside} (borderline)"
            if any("borderline" in w for w in words)
            else inside
        )

    def images_off(self, model: str) -> int:
        """How many images, summed over the study's numbers, lie between ours
        and the counts each printed number can stand for."""
        total = 0
        for key, study in SEED_STUDY[model].items():
            low, high = printed_range(*study, size(self.row, key))
            k = count(self.row, key)
            total += low - k if k < low else k - high if k > high else 0
        return total


def readings_table(readings: dict[str, list[Reading]]) -> list[str]:
    lines = [
        "| task | reading of an iteration | steps run | epochs run (best) | "
        f"validation | test, all | test, last {LAST_N:,} | within the noise |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, rows in readings.items():
        for r in rows:
            row = r.row
            lines.append(
                f"| {TASK[model]} | {r.name} | {r.steps:,} | "
                f"{row['epochs_run']:,} ({row['best_epoch']:,}) | "
                f"{with_interval(row['val_accuracy'], row['val_images'])} | "
                f"{with_interval(row['test_accuracy'], row['test_images'])} | "
                f"{with_interval(row['test_accuracy_last'], row['test_images_last'])}"
                f" | {r.noise(model)} |"
            )
    return lines


def study_numbers(model: str) -> str:
    return " and ".join(
        f"{printed(study)} ({COMPARED[key]})"
        for key, study in SEED_STUDY[model].items()
    )


def verdict(model: str, rows: list[Reading], tests: list | None = None) -> str:
    """Which readings match the study's numbers for ``model``, which come
    closest (in images, ties named as ties), which the study's numbers exclude,
    and which the paired tests on the same test images (``tests``: the readings'
    family, Holm-adjusted) tell apart."""
    inside = [r.name for r in rows if r.within(model)]
    off = {r.name: r.images_off(model) for r in rows}
    nearest = min(off.values())
    closest = [name for name, images in off.items() if images == nearest]
    matched = (
        f"{', '.join(inside)} land{'s' if len(inside) == 1 else ''} within the noise"
        if inside
        else "no reading lands within the noise"
    )
    distance = (
        "within the printed rounding"
        if nearest == 0
        else f"{nearest} image{'s' if nearest > 1 else ''} from it"
    )
    if len(closest) == 1:
        near = f"closest is {closest[0]} ({distance})"
    else:
        near = f"{', '.join(closest)} tie as closest ({distance})"
    excluded = {r.name: off[r.name] for r in rows if not r.within(model)}
    said = []
    if excluded:
        worst = max(excluded, key=excluded.get)
        said.append(
            f"the study's numbers exclude {', '.join(excluded)} ({worst} by "
            f"{excluded[worst]} image{'s' if excluded[worst] != 1 else ''} over "
            "all of them)"
        )
    apart = [t for t in tests or [] if t.p_holm < PAIRED_ALPHA]
    if apart:
        said.append(
            "paired tests on the same test images separate "
            + "; ".join(
                f"{t.first} from {t.second} (Holm p {p_value(t.p_holm)})" for t in apart
            )
        )
    elif tests:
        said.append("the paired tests on the same test images separate none")
    sure = "; ".join(said) or "the study's numbers cannot tell the readings apart"
    return (
        f"{TASK[model]}: against the study's {study_numbers(model)}, {matched}; "
        f"{near}. {sure[0].upper()}{sure[1:]}."
    )


def p_value(p: float) -> str:
    return "< 1e-4" if p < 1e-4 else f"{p:.2g}"


def seeds_table(defaults: dict[str, dict]) -> list[str]:
    lines = [
        f"| task | seeds | validation | test, all | test, last {LAST_N:,} |",
        "|---|---|---|---|---|",
    ]
    for model, summary in defaults.items():
        cells = []
        for key in ("val_accuracy", "test_accuracy", "test_accuracy_last"):
            mean, sd = summary[key]["mean"], summary[key]["sd"]
            low, high = wilson(mean, size(summary, key))
            cells.append(
                f"{pct(mean)} ± {100 * sd:.2f} ({100 * low:.1f}-{100 * high:.1f})"
            )
        lines.append(f"| {TASK[model]} | {summary['seeds']} | {' | '.join(cells)} |")
    return lines


def images(count: float) -> str:
    """A number of images, exact for one run, to a tenth for a mean over seeds."""
    return f"{count:.1f}".removesuffix(".0")


def images_per_point(row: Mapping) -> str:
    return (
        f"{row['test_images']:,} test images in all (one image is "
        f"{100 / row['test_images']:.3f} points) and {row['test_images_last']:,} "
        f"among the last {LAST_N:,} ({100 / row['test_images_last']:.3f} points); "
        f"{row['val_images']:,} validation images"
    )


def against(ours: float, n: int, study: tuple[float, float]) -> str:
    """Our accuracy, its distance to the study's number and whether that is noise."""
    value = study[0]
    side = "below" if ours < value else "above"
    noise = "within" if within_noise(ours, n, study) else "outside"
    close = (
        " (borderline: the verdict hinges on the third decimal)"
        if borderline(ours, n, study)
        else ""
    )
    return (
        f"{pct(ours)}, {abs(100 * (value - ours)):.2f} points "
        f"({images(abs(value - ours) * n)} of {n:,} images) {side} it, "
        f"{noise} the noise{close}"
    )


def gaps(model: str, preset: Reading, defaults: dict) -> list[str]:
    """Why the seed preset's run ended, then each number the study reported: the
    gap to the preset's and to our defaults' (mean over seeds), against the noise."""
    row = preset.row
    short = [
        COMPARED[key]
        for key, study in SEED_STUDY[model].items()
        if row[key] < study[0] and not within_noise(row[key], size(row, key), study)
    ]
    sentences = [
        f"{TASK[model]}: the seed preset's run (full batch) was still improving when "
        f"its {preset.steps:,} steps ran out (its best epoch is its last)"
        + (
            f", and on {' and '.join(short)} it falls short of the study beyond the "
            "noise: there it is undertrained."
            if short
            else "."
        )
        if row["best_epoch"] == row["epochs_run"]
        else f"{TASK[model]}: early stopping ended the seed preset's run (full batch) "
        f"at epoch {row['epochs_run']:,}, its best at {row['best_epoch']:,}."
    ]
    for key, study in SEED_STUDY[model].items():
        n = size(row, key)
        sentences.append(
            f"{TASK[model]}, {COMPARED[key]}, where the study reports "
            f"{printed(study)}: the seed preset scores {against(row[key], n, study)}; "
            f"our defaults, averaged over {defaults['seeds']} seeds, "
            f"{against(defaults[key]['mean'], n, study)}."
        )
    return sentences


def last_images_easier(model: str, row: Mapping) -> str | None:
    """The last test images against all of them, when the gap exceeds the noise."""
    all_, last = row["test_accuracy"], row["test_accuracy_last"]
    low, high = wilson(last, row["test_images_last"])  # the smaller set's noise
    if low <= all_ <= high:
        return None
    return (
        f"{TASK[model]}: the last {LAST_N:,} test images are "
        f"{'easier' if last > all_ else 'harder'} than the whole test set "
        f"({pct(last)} against {pct(all_)} for the same seed-preset model), beyond "
        "the noise; on which images a number was measured matters as much as how "
        "the model was trained."
    )


@dataclass
class Protocol:
    """One way of running the study: its name, the job that ran it, its row of
    ``accuracies``."""

    name: str
    job: Job
    row: dict


def count(row: Mapping, key: str) -> int:
    """The images an accuracy stands for: k of its set's n."""
    return round(row[key] * size(row, key))


def printed_range(value: float, rounding: float, n: int) -> tuple[int, int]:
    """The counts of n images a printed percentage can stand for, given its
    rounding: every k with |k / n - value| <= rounding."""
    low = int(np.ceil((value - rounding) * n - 1e-9))
    high = int(np.floor((value + rounding) * n + 1e-9))
    return low, high


def counted(k: int, n: int) -> str:
    low, high = wilson(k / n, n)
    return f"{k:,}/{n:,} ({100 * low:.1f}-{100 * high:.1f})"


def protocols_table(protocols: dict[str, list[Protocol]]) -> list[str]:
    """Per task, the study's printed numbers as counts, then each protocol's
    counts with their 95% Wilson intervals (in percent)."""
    keys = ("val_accuracy", "test_accuracy_last", "test_accuracy")
    names = {**COMPARED, "test_accuracy": "test, all"}
    lines = [
        "| task | protocol | " + " | ".join(names[k] for k in keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for model, rows in protocols.items():
        sample = rows[0].row
        cells = []
        for key in keys:
            if key not in SEED_STUDY[model]:
                cells.append("not reported")
                continue
            low, high = printed_range(*SEED_STUDY[model][key], size(sample, key))
            span = f"{low:,}" if low == high else f"{low:,}-{high:,}"
            cells.append(
                f"{printed(SEED_STUDY[model][key])}: {span}/{size(sample, key):,}"
            )
        lines.append(
            f"| {TASK[model]} | the seed study, as printed | {' | '.join(cells)} |"
        )
        for protocol in rows:
            cells = [
                counted(count(protocol.row, k), size(protocol.row, k)) for k in keys
            ]
            lines.append(f"| {TASK[model]} | {protocol.name} | {' | '.join(cells)} |")
    return lines


def reproduction(model: str, protocols: list[Protocol]) -> list[str]:
    """For each number the study printed: the counts it can stand for, and how
    many images each protocol lies from them (0: it reproduces the number to the
    image)."""
    sentences = []
    for key, (value, rounding) in SEED_STUDY[model].items():
        n = size(protocols[0].row, key)
        low, high = printed_range(value, rounding, n)
        span = f"{low:,}" if low == high else f"{low:,} to {high:,}"
        parts = []
        for protocol in protocols:
            k = count(protocol.row, key)
            off = low - k if k < low else k - high if k > high else 0
            where = (
                "reproduces it to the image"
                if off == 0 and low == high
                else "lies within its rounding"
                if off == 0
                else f"{off:,} image{'s' if off > 1 else ''} "
                f"{'short of' if k < low else 'beyond'} it"
            )
            parts.append(f"{protocol.name} has {k:,} ({where})")
        sentences.append(
            f"{TASK[model]}, {COMPARED[key]}: the study's {printed((value, rounding))} "
            "stands for "
            f"{span} of {n:,} images; " + "; ".join(parts) + "."
        )
    return sentences
