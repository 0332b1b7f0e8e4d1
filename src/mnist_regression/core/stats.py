"""Statistics over repeated runs, shared by the sweeps' parent runs and the report."""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t


def mean_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` (one per seed) and its 95%
    Student-t interval; a single value has no interval (low = high = mean)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    spread = values.std(ddof=1) / np.sqrt(len(values))
    half = float(student_t.ppf(0.975, len(values) - 1) * spread)
    return mean, mean - half, mean + half
