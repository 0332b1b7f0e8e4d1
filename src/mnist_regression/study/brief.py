"""``results.md``'s opening summary, "In brief": each model's accuracy, whether
the seed study reproduces and by which protocol, and what L2, annealing and the
learning rate did, every number read from the study's details (``details.json``)."""

from __future__ import annotations

from collections.abc import Mapping

from .original import (
    SEED_STUDY,
    TASK,
    count,
    pct,
    printed,
    printed_range,
    size,
    wilson,
)

ALPHA = 0.05  # Holm-adjusted significance of the paired tests


def in_brief(details: Mapping) -> list[str]:
    return [
        "## In brief",
        "",
        accuracy(details),
        reproduced(details["protocols"]),
        penalty(details["paired"]),
        annealing(details["logistic_anneal"], details["logistic"]["test_images"]),
        rates(details["logistic_lr"], details["logistic"]["test_images"]),
    ]


def accuracy(details: Mapping) -> str:
    parts = []
    for model, task in TASK.items():
        summary = details[model]
        mean, n = summary["test_accuracy"]["mean"], summary["test_images"]
        low, high = wilson(mean, n)
        parts.append(
            f"**{task}** {pct(mean)} of {n:,} test images "
            f"(95% interval {100 * low:.1f}-{100 * high:.1f}, mean of "
            f"{summary['seeds']} seeds)"
        )
    return "- Our defaults classify " + "; ".join(parts) + "."


def reproduced(protocols: Mapping[str, Mapping[str, Mapping]]) -> str:
    """Per number the seed study printed, the protocols whose count lies within
    its rounding (to the image where the rounding allows one count only)."""
    parts = []
    for model, numbers in SEED_STUDY.items():
        for key, (value, rounding) in numbers.items():
            rows = protocols[model]
            n = size(next(iter(rows.values())), key)
            low, high = printed_range(value, rounding, n)
            matching = [
                name for name, row in rows.items() if low <= count(row, key) <= high
            ]
            how = "to the image" if low == high else "within its rounding"
            found = " and ".join(matching) + f" ({how})" if matching else "none"
            where = "validation" if key == "val_accuracy" else "test"
            said = printed((value, rounding))
            parts.append(f"{TASK[model]} {where} {said}: {found}")
    return "- The 2019 study's numbers, reproduced by: " + "; ".join(parts) + "."


def penalty(paired: Mapping[str, Mapping]) -> str:
    """Each lambda against lambda 0 on the same test images (McNemar, Holm)."""
    parts = []
    for family in sorted(paired.values(), key=lambda f: f["task"] != TASK["logistic"]):
        if not (family["stage"] or "").endswith("_l2"):
            continue
        same, worse, better = [], [], []
        for test in family["tests"]:
            if test["first"] != "lambda 0":
                continue
            value = test["second"].removeprefix("lambda ")
            if test["p_holm"] >= ALPHA:
                same.append(value)
            elif test["only_first"] > test["only_second"]:
                worse.append(value)
            else:
                better.append(value)
        said = []
        if same:
            said.append(f"lambda {', '.join(same)} cannot be told from 0")
        if worse:
            said.append(f"{', '.join(worse)} classify worse")
        if better:
            said.append(f"{', '.join(better)} classify better")
        parts.append(f"{family['task']}: " + ", ".join(said))
    return (
        "- L2, paired on the test images (McNemar, Holm, p < 0.05): "
        + "; ".join(parts)
        + "."
    )


def annealing(sweep: Mapping[str, Mapping], n: int) -> str:
    counts = {name: round(row["test_accuracy"] * n) for name, row in sweep.items()}
    (off, plain), (on, annealed) = sorted(counts.items())
    gap = abs(annealed - plain)
    return (
        f"- Annealing (2 vs 3, {on.replace('anneal_k', 'k')} against "
        f"{off.replace('anneal_k', 'k')}): {annealed:,} against {plain:,} of {n:,} "
        f"test images correct, {gap} image{'s' if gap != 1 else ''} apart, in "
        f"{sweep[on]['epochs_run']} and {sweep[off]['epochs_run']} epochs."
    )


def rates(sweep: Mapping[str, Mapping], n: int) -> str:
    parts = [
        f"{name.replace('lr=', 'lr ')}: "
        f"{round(row['test_accuracy'] * n):,} correct in "
        f"{row['epochs_run']} epochs"
        for name, row in sorted(sweep.items(), key=lambda kv: float(kv[0][3:]))
    ]
    return (
        f"- The learning rate (2 vs 3, of {n:,} test images): " + "; ".join(parts) + "."
    )
