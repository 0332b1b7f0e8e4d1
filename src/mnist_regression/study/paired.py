"""Paired comparisons on the same test images: exact McNemar tests, Holm's
correction over each family of comparisons.

Two models scored on the same images differ only where one is right and the other
wrong: b images for the first alone, c for the second alone. Under the null
hypothesis that both are equally accurate, each of those b + c images favours
either with probability 1/2, so the exact two-sided p-value is that of a binomial
test of b successes in b + c trials at 1/2 (McNemar's exact test). Images both get
right, or both wrong, say nothing about which is better, which is why a paired
test separates models that unpaired intervals of ~400 images cannot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class Paired:
    first: str
    second: str
    only_first: int  # images the first gets right and the second wrong (b)
    only_second: int  # the other way round (c)
    p: float  # exact McNemar p-value
    p_holm: float = float("nan")  # after Holm's correction over its family


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """(b, c, exact two-sided p) for two models' per-image correctness."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"not the same images: {a.shape} against {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return only_a, only_b, 1.0
    return only_a, only_b, float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest of m p-values times
    (m - i), kept monotone and at most 1, in the input's order."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (m - rank) * p_values[index])
        adjusted[index] = min(1.0, running)
    return adjusted.tolist()


def family(correct: Mapping[str, np.ndarray], pairs=None) -> list[Paired]:
    """McNemar tests between every pair of ``correct`` (name -> per-image
    correctness), or the given ``pairs`` of names, Holm-corrected together."""
    pairs = list(pairs) if pairs is not None else list(combinations(correct, 2))
    tests = [(a, b, *mcnemar(correct[a], correct[b])) for a, b in pairs]
    adjusted = holm([t[-1] for t in tests])
    return [Paired(*t, p_holm=q) for t, q in zip(tests, adjusted, strict=True)]


def p_text(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def table(tests: list[Paired], n: int) -> list[str]:
    """Markdown: each pair, its discordant images and both p-values."""
    lines = [
        "| first | second | right only in first | right only in second | "
        "p (exact McNemar) | p (Holm) |",
        "|---|---|---|---|---|---|",
    ]
    for t in tests:
        lines.append(
            f"| {t.first} | {t.second} | {t.only_first:,} | {t.only_second:,} | "
            f"{p_text(t.p)} | {p_text(t.p_holm)} |"
        )
    return lines


def summary(tests: list[Paired], alpha: float = 0.05) -> str:
    """One sentence true of every test of the family."""
    significant = [t for t in tests if t.p_holm < alpha]
    if not significant:
        return (
            f"None of the {len(tests)} differences is significant at {alpha:g} "
            "after Holm's correction."
        )

    def won(t: Paired) -> str:
        first_wins = t.only_first > t.only_second
        winner, loser = (t.first, t.second) if first_wins else (t.second, t.first)
        more, fewer = sorted((t.only_first, t.only_second), reverse=True)
        p = p_text(t.p_holm)
        return (
            f"{winner} beats {loser} ({more:,} images against {fewer:,}, "
            f"p {p if p.startswith('<') else '= ' + p})"
        )

    count = (
        f"All {len(tests)} differences are"
        if len(significant) == len(tests)
        else f"{len(significant)} of the {len(tests)} differences "
        f"{'is' if len(significant) == 1 else 'are'}"
    )
    rest = "" if len(significant) == len(tests) else "; the others are not"
    return (
        f"{count} significant at {alpha:g} after Holm's correction: "
        + "; ".join(won(t) for t in significant)
        + rest
        + "."
    )
