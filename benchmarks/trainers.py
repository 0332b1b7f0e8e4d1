"""The three trainers raced to a target test accuracy, each returning a trace of
(seconds since start, test accuracy) pairs."""

from __future__ import annotations

import time

import numpy as np

from mnist_regression.models import LinearModel
from mnist_regression.training import Dataset, Schedule, train

Trace = list[tuple[float, float]]
NAMES = ("ours", "sklearn", "torch")


def ours(data: Dataset, kind: str, schedule: Schedule, seed: int = 0) -> Trace:
    """Our trainer as configured; evaluates every split every epoch."""
    model = LinearModel.zeros(kind, data.x["train"].shape[1], data.n_classes)
    trace: Trace = []
    start = time.perf_counter()

    def on_eval(epoch: int, values: dict[str, float]) -> None:
        trace.append((time.perf_counter() - start, values["test_accuracy"]))

    train(model, data, schedule, np.random.default_rng(seed), on_eval=on_eval)
    return trace


def sklearn_lbfgs(data: Dataset, iterations: list[int]) -> tuple[Trace, dict]:
    """LogisticRegression(lbfgs) fitted from scratch with growing max_iter."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    trace: Trace = []
    for max_iter in iterations:
        model = LogisticRegression(solver="lbfgs", max_iter=max_iter, tol=1e-6)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(data.x["train"], data.t["train"])
        seconds = time.perf_counter() - start
        accuracy = float(model.score(data.x["test"], data.t["test"]))
        trace.append((seconds, accuracy))
        if model.n_iter_.max() < max_iter:
            break
    converged = {
        "seconds": trace[-1][0],
        "test_accuracy": trace[-1][1],
        "iterations": int(model.n_iter_.max()),
    }
    return trace, converged


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
