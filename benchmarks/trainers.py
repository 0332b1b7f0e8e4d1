"""The three trainers raced to a target test accuracy, each returning a trace of
(seconds since start, test accuracy) pairs."""

from __future__ import annotations

import functools
import time

import numpy as np

from mnist_regression.core.losses import TASKS
from mnist_regression.core.models import LinearModel
from mnist_regression.core.training import Dataset, Schedule, train
from mnist_regression.data.prepare import load_task

Trace = list[tuple[float, float]]
NAMES = ("ours", "sklearn", "torch")


@functools.cache
def dataset(prepared_dir: str, kind: str) -> Dataset:
    """The prepared data a model kind trains on, read once per process."""
    return Dataset.from_arrays(load_task(prepared_dir, TASKS[kind]))


def ours(data: Dataset, kind: str, schedule: Schedule, seed: int = 0) -> Trace:
    """Our trainer as configured; evaluates every split every epoch. The time
    of ``lr=auto`` includes finding its rate (``train`` finds it)."""
    model = LinearModel.zeros(kind, data.x["train"].shape[1], data.n_classes)
    trace: Trace = []
    start = time.perf_counter()

    def on_eval(epoch: int, values: dict[str, float]) -> None:
        trace.append((time.perf_counter() - start, values["test_accuracy"]))

    train(model, data, schedule, np.random.default_rng(seed), on_eval=on_eval)
    return trace


def sklearn_lbfgs(
    data: Dataset, target: float, repeats: int = 1, max_iter: int = 1024
) -> tuple[Trace, dict]:
    """LogisticRegression(lbfgs) fitted from scratch with a growing ``max_iter``.

    ``max_iter`` doubles until the fit converges; then a bisection finds the
    fewest iterations that reach ``target``, so the time to target is the time
    of that fit rather than of the next power of two, and that fit is timed
    ``repeats`` times. The trace holds one point per fit, in order of ``max_iter``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    fits: dict[int, tuple[float, float, int]] = {}

    def fit(iterations: int) -> float:
        model = LogisticRegression(solver="lbfgs", max_iter=iterations, tol=1e-6)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(data.x["train"], data.t["train"])
        seconds = time.perf_counter() - start
        accuracy = float(model.score(data.x["test"], data.t["test"]))
        fits[iterations] = (seconds, accuracy, int(model.n_iter_.max()))
        return accuracy

    iterations = 1
    while iterations <= max_iter:
        fit(iterations)
        if fits[iterations][2] < iterations:
            break
        iterations *= 2
    converged = fits[max(fits)]
    reached = [k for k in sorted(fits) if fits[k][1] >= target]
    if reached:
        high = reached[0]
        low = max((k for k in fits if k < high), default=0)
        while high - low > 1:
            middle = (low + high) // 2
            if fit(middle) >= target:
                high = middle
            else:
                low = middle
    trace = [fits[k][:2] for k in sorted(fits)]
    to_target = min((k for k in fits if fits[k][1] >= target), default=None)
    seconds = []
    if to_target is not None:
        seconds = [fits[to_target][0]]
        for _ in range(repeats - 1):
            fit(to_target)
            seconds.append(fits[to_target][0])
    summary = {
        "seconds": converged[0],
        "test_accuracy": converged[1],
        "iterations": converged[2],
        "iterations_to_target": to_target,
        "seconds_to_target": seconds,
    }
    return trace, summary


def torch_sgd(
    data: Dataset, kind: str, schedule: Schedule, target: float, seed: int = 0
) -> Trace:
    """nn.Linear, cross-entropy and SGD, same batch size and rate; stops at target."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(data.x["train"]))
    t = torch.from_numpy(data.t["train"])
    x_test = torch.from_numpy(np.ascontiguousarray(data.x["test"]))
    t_test = torch.from_numpy(data.t["test"])
    binary = kind == "logistic"
    layer = nn.Linear(x.shape[1], 1 if binary else data.n_classes)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    loss_fn = nn.BCEWithLogitsLoss() if binary else nn.CrossEntropyLoss()
    labels = t.float() if binary else t
    optimizer = torch.optim.SGD(layer.parameters(), lr=schedule.lr)
    batch = schedule.batch_size or len(x)
    trace: Trace = []
    start = time.perf_counter()
    for _ in range(schedule.max_epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            out = layer(x[idx])
            loss = loss_fn(out[:, 0] if binary else out, labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            out = layer(x_test)
            predicted = (out[:, 0] > 0).long() if binary else out.argmax(1)
            accuracy = float((predicted == t_test).float().mean())
        trace.append((time.perf_counter() - start, accuracy))
        if accuracy >= target:
            break
    return trace


def time_to(trace: Trace, target: float) -> float | None:
    return next((seconds for seconds, acc in trace if acc >= target), None)
