"""Mini-batch gradient descent with an annealed rate and early stopping. No I/O.

The rate at step s (counting mini-batches) is ``lr / (1 + anneal_k * s)``. Every
``eval_every`` epochs the model is evaluated on every split; training stops early
on the validation set's ``monitor`` (the loss; or the objective, the loss plus the
penalty; or the scaled objective, the loss divided by the set's size and the
model's outputs, plus the penalty, as the seed study's code stopped softmax), when
``stop_when`` says:

- ``no_new_best``: no better value for ``patience`` evaluations;
- ``rising``: the value rose ``patience`` times in a row, among the evaluations
  after the first step and once more than ``patience + 1`` of them exist (the
  seed study's code: cost[i-2] < cost[i-1] < cost[i], checked from its fourth
  iteration);

or after ``max_epochs`` epochs or ``max_steps`` updates (then within an epoch,
which is evaluated). The weights of the best evaluation are restored, unless
``restore_best`` is false: then the run keeps its last weights.

With ``average="epoch"`` the mini-batch steps go on as before, but the weights
evaluated, watched by early stopping and kept are the mean of each epoch's
iterates (Polyak-Ruppert averaging over the epoch), whose noise is an epoch's
worth smaller: at the edge of stability (``lr=auto``) it reaches the accuracy of
plain steps in a fraction of their epochs. A full batch has one step an epoch and
nothing to average.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from ..common.config import AUTO_RATE, Average, Monitor, StopWhen
from ..common.errors import UserError
from .models import LinearModel, curvature_at_zero, stable_rate
from .objective import Objective
from .passes import FusedPasses, Scores

SPLITS = ("train", "val", "test")
METRICS = (
    *(f"{split}_{kind}" for kind in ("loss", "accuracy") for split in SPLITS),
    "weight_norm",
    "learning_rate",
)


# A training loss this many times the loss at the start (w = 0, the loss of chance)
# means the run has diverged even if no number overflowed.
BLOWUP_FACTOR = 10.0


class DivergenceError(UserError):
    """The loss became NaN or infinite, or grew far above its starting value."""


def blame(data: Dataset, kind: str, schedule: Schedule, l2: float) -> str:
    """The setting most likely at fault for a divergence, and what to do."""
    curvature = curvature_at_zero(data.x["train"], kind, data.n_classes)
    bare, limit = 2.0 / curvature, 2.0 / (curvature + l2)
    lr = schedule.lr
    if lr > bare:
        return (
            f"optimizer.lr={lr:g} is above the largest stable rate of gradient "
            f"descent on these data, 2 / L = {bare:.3g}: lower optimizer.lr, or "
            "raise optimizer.anneal_k to shrink it over time"
        )
    if lr > limit:
        return (
            f"model.l2={l2:g} lowers the largest stable rate to 2 / (L + l2) = "
            f"{limit:.3g}, below optimizer.lr={lr:g}: lower model.l2 or optimizer.lr"
        )
    if schedule.batch_size and schedule.anneal_k == 0:
        return (
            f"optimizer.lr={lr:g} is within the stable rate ({limit:.3g}) yet the "
            f"mini-batch noise (batch {schedule.batch_size}) drove the weights away: "
            "set optimizer.anneal_k > 0 or a larger optimizer.batch_size"
        )
    return (
        f"optimizer.lr={lr:g} is within the stable rate ({limit:.3g}): the data "
        "are suspect (pixels not in [0, 1]?); run `dvc repro prepare --force`"
    )


@dataclass
class Dataset:
    """Inputs ``x`` (n, d) float32 and targets ``t`` (n,) int64 of each split."""

    x: Mapping[str, np.ndarray]
    t: Mapping[str, np.ndarray]

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Dataset:
        return cls(
            {s: arrays[f"x_{s}"] for s in SPLITS}, {s: arrays[f"t_{s}"] for s in SPLITS}
        )

    @property
    def n_classes(self) -> int:
        return int(max(t.max() for t in self.t.values())) + 1


@dataclass
class History:
    """Metrics of every evaluation; ``epoch[i]`` is the epoch of evaluation i."""

    epoch: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(
        default_factory=lambda: {name: [] for name in METRICS}
    )
    best_epoch: int = 0
    stop_reason: str = ""

    def append(self, epoch: int, values: Mapping[str, float]) -> None:
        self.epoch.append(epoch)
        for name in METRICS:
            self.metrics[name].append(values[name])

    def at(self, epoch: int) -> dict[str, float]:
        i = self.epoch.index(epoch)
        return {name: values[i] for name, values in self.metrics.items()}

    @property
    def epochs_run(self) -> int:
        return self.epoch[-1] if self.epoch else 0


@dataclass
class Schedule:
    lr: float  # or AUTO_RATE, until ``with_stable_rate`` puts the rate in
    batch_size: int | None
    anneal_k: float
    max_epochs: int
    patience: int
    eval_every: int = 1
    max_steps: int | None = None  # updates (mini-batches) before stopping
    stop_when: str = "no_new_best"  # one of STOP_RULES
    restore_best: bool = True
    monitor: str = "loss"  # one of MONITORS
    average: str = "none"  # one of AVERAGES

    def averaged(self, n_train: int) -> bool:
        """Whether an epoch of ``n_train`` examples averages its steps."""
        steps = self.batch_size is not None and self.batch_size < n_train
        return self.average == Average.epoch.value and steps

    def rate(self, step: int) -> float:
        return self.lr / (1.0 + self.anneal_k * step)

    def stop_reason(self, values: list[float], since_best: int) -> str:
        """Why to stop now, or "": ``values``, the monitored value of every
        evaluation so far, the first at the start; ``since_best``, evaluations
        since the best one."""
        k, name = self.patience, MONITORS[self.monitor]
        if self.stop_when == "no_new_best":
            if since_best >= k:
                return f"{name} not improved in {since_best} evaluations"
            return ""
        after = values[1:]  # the evaluations after the first step
        recent = after[-k - 1 :]
        if len(after) > k + 1 and all(
            a < b for a, b in zip(recent, recent[1:], strict=False)
        ):
            return f"{name} rose {k} times in a row"
        return ""


STOP_RULES = tuple(rule.value for rule in StopWhen)
AVERAGES = tuple(average.value for average in Average)
MONITORS = {  # what early stopping watches -> its name in a stop reason
    Monitor.loss.value: "val_loss",
    Monitor.objective.value: "val objective",
    Monitor.scaled_objective.value: "val scaled objective",
}


def with_stable_rate(
    schedule: Schedule, data: Dataset, objective: Objective
) -> Schedule:
    """``schedule``, its ``lr=auto`` replaced by ``stable_rate`` of the training
    set under the objective's penalty: at the edge of stability if the steps are
    averaged."""
    if schedule.lr != AUTO_RATE:
        return schedule
    x, kind = data.x["train"], objective.loss.model
    edge = schedule.averaged(len(x))
    rate = stable_rate(x, kind, data.n_classes, objective.l2, edge=edge)
    return replace(schedule, lr=rate)


def evaluate(
    model: LinearModel, passes: FusedPasses, known: Mapping[str, Scores] | None = None
) -> dict[str, float]:
    """Loss and accuracy of every split; ``known``, scores of some splits from a
    pass at the same weights, saves their passes."""
    known = known or {}
    missing = [split for split in SPLITS if split not in known]
    scores = {**known, **(passes.score_splits(model, missing) if missing else {})}
    values = {}
    for split in SPLITS:
        values[f"{split}_loss"] = scores[split].loss
        values[f"{split}_accuracy"] = scores[split].accuracy
    values["weight_norm"] = model.weight_norm()
    return values


def train(
    model: LinearModel,
    data: Dataset,
    schedule: Schedule,
    rng: np.random.Generator,
    objective: Objective | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> History:
    """Minimise ``objective`` (default: the model's loss alone) from the model's
    current weights, in place; on return it holds the best weights seen. A
    schedule at ``lr=auto`` gets its rate from ``with_stable_rate``.

    Overflow or an invalid value anywhere in the arithmetic raises at once and
    becomes a DivergenceError, instead of warning and carrying NaN along.
    """
    objective = objective or Objective.of(model.kind)
    schedule = with_stable_rate(schedule, data, objective)  # lr=auto: its rate
    progress = {"epoch": 0}
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            history = _train(model, data, schedule, rng, objective, on_eval, progress)
    except FloatingPointError:
        what = "the loss is not finite"
    else:
        losses = history.metrics["train_loss"]
        start, worst = losses[0], max(losses)
        if worst <= BLOWUP_FACTOR * start:
            return history
        what = f"the training loss rose from {start:.3g} to {worst:.3g}"
        progress["epoch"] = history.epoch[int(np.argmax(losses))]
    raise DivergenceError(
        f"training diverged in epoch {progress['epoch']} ({what}): "
        + blame(data, model.kind, schedule, objective.l2)
    ) from None


def _train(model, data, schedule, rng, objective, on_eval, progress) -> History:
    with FusedPasses(objective, data.x, data.t, model.weights) as passes:
        return _descend(model, data, passes, schedule, rng, on_eval, progress)


class _Descent:
    """Gradient descent on one model: its steps, and its evaluations recorded in
    ``history``. At full batch the pass that scores the training set also yields
    the gradient of the next step, over the columns the passes keep (the others
    stay 0); otherwise each epoch steps through shuffled mini-batches, from the
    last step's weights (``iterate``), and the model holds their mean over the
    epoch when the schedule averages, else the last step's weights themselves."""

    def __init__(self, model, data, passes, schedule, rng, on_eval) -> None:
        self.model, self.passes, self.schedule = model, passes, schedule
        self.rng, self.on_eval = rng, on_eval
        self.x, self.t = data.x["train"], data.t["train"]
        self.n_val = len(data.x["val"])
        self.batch = min(schedule.batch_size or len(self.x), len(self.x))
        self.full_batch = self.batch == len(self.x)
        self.averaged = schedule.averaged(len(self.x))
        self.iterate = model.copy() if self.averaged else model
        # the sums of an epoch's iterates, in float64: hundreds of float32 terms
        self.sum_w = np.zeros(model.weights.shape) if self.averaged else None
        self.sum_b = np.zeros(model.bias.shape) if self.averaged else None
        self.history, self.step = History(), 0

    def record(self, epoch: int, known: Mapping[str, Scores]) -> float:
        """Evaluate every split (``known``: scores from this epoch's pass), record
        the values and return the validation value early stopping watches."""
        values = evaluate(self.model, self.passes, known)
        values["learning_rate"] = self.schedule.rate(self.step)
        if not np.isfinite(values["train_loss"]):
            raise FloatingPointError("non-finite training loss")
        self.history.append(epoch, values)
        if self.on_eval:
            self.on_eval(epoch, values)
        return self.monitored(values["val_loss"])

    def monitored(self, val_loss: float) -> float:
        """The schedule's ``monitor`` from the validation loss."""
        if self.schedule.monitor == "loss":
            return val_loss
        if self.schedule.monitor == "scaled_objective":
            val_loss /= self.n_val * self.model.weights.shape[1]
        return val_loss + self.passes.objective.penalty(self.model)

    def evaluated(self, epoch: int) -> bool:
        last = epoch == self.schedule.max_epochs or self.step == self.schedule.max_steps
        return epoch % self.schedule.eval_every == 0 or last

    def full_pass(self, epoch: int) -> dict[str, Scores]:
        """The training set's scores and gradient, and in the same pass the
        other splits' scores when this epoch is evaluated."""
        splits = list(SPLITS) if self.evaluated(epoch) else ["train"]
        return self.passes.score_splits(self.model, splits, gradient="train")

    def take_step(self, grad_w: np.ndarray, grad_b: np.ndarray, rows=slice(None)):
        """One step along the objective's gradient (over the ``rows`` of W)."""
        rate = self.schedule.rate(self.step)
        grad_w *= rate
        grad_b *= rate
        self.iterate.weights[rows] -= grad_w
        self.iterate.bias -= grad_b
        self.step += 1

    def epoch(self, number: int, scores: dict[str, Scores]) -> dict[str, Scores]:
        """One epoch (or fewer steps, up to ``max_steps``); the scores its last
        full-batch pass already computed."""
        if self.full_batch:
            train = scores["train"]
            self.take_step(train.grad_w, train.grad_b, self.passes.keep)
            return self.full_pass(number)
        order = self.rng.permutation(len(self.x))
        iterate, objective = self.iterate, self.passes.objective
        steps = 0
        if self.averaged:
            self.sum_w[...], self.sum_b[...] = 0.0, 0.0
        for start in range(0, len(self.x), self.batch):
            idx = order[start : start + self.batch]
            # A diverging step raises here: logits() checks that z is finite, and
            # the arithmetic runs under np.errstate(raise).
            self.take_step(*objective.gradient(iterate, self.x[idx], self.t[idx]))
            if self.averaged:
                np.add(self.sum_w, iterate.weights, out=self.sum_w)
                np.add(self.sum_b, iterate.bias, out=self.sum_b)
                steps += 1
            if self.step == self.schedule.max_steps:
                break
        if self.averaged:
            self.model.weights[...] = self.sum_w / steps
            self.model.bias[...] = self.sum_b / steps
        return {}


def _descend(model, data, passes, schedule, rng, on_eval, progress) -> History:
    """Descend until early stopping, ``max_steps`` or ``max_epochs``; then restore
    the weights of the best evaluation, or keep the last (``restore_best``).
    ``history.best_epoch`` is the epoch of the weights the model ends with."""
    run = _Descent(model, data, passes, schedule, rng, on_eval)
    history = run.history
    scores = run.full_pass(0) if run.full_batch else {}
    values = [run.record(0, scores)]
    best, best_value, since_best = model.copy(), values[0], 0
    for epoch in range(1, schedule.max_epochs + 1):
        progress["epoch"] = epoch
        scores = run.epoch(epoch, scores)
        if not run.evaluated(epoch):
            continue
        values.append(run.record(epoch, scores))
        if values[-1] < best_value:
            best, best_value, since_best = model.copy(), values[-1], 0
            history.best_epoch = epoch
        else:
            since_best += 1
        history.stop_reason = schedule.stop_reason(values, since_best)
        if history.stop_reason:
            break
        if run.step == schedule.max_steps:
            history.stop_reason = f"max_steps={run.step} reached"
            break
    else:
        history.stop_reason = f"max_epochs={schedule.max_epochs} reached"
    if schedule.restore_best:
        model.weights, model.bias = best.weights, best.bias
    else:
        history.best_epoch = history.epoch[-1]
    return history
