"""The objective every solver minimises: the data loss and the penalty, together.

For a model with weights W (d, k) and bias b (k,), k = 1 for logistic regression and
the number of classes for softmax, and a batch X (n, d) with targets t (n,):

    J(W, b) = CE(X W + b, t) + l2/2 ||W||^2  [+ l2/2 ||b||^2 if bias = penalised]

CE is the mean cross-entropy of ``losses``. Its gradient is the analytic one,

    dJ/dW = X^T (y - t) / n + l2 W,    dJ/db = sum_i (y_i - t_i) / n [+ l2 b]

the ``(t - y) x`` rule with the sign of descent. The mini-batch path asks
``gradient`` for it; the full-batch passes (``passes``) compute the data term in
their own blocks and finish it with ``finish_gradient``: both take it
from here.

The bias is ``free`` (trained, not penalised), ``penalised`` (trained and
penalised, as a column of ones prepended to X would be) or ``none`` (held at 0:
its gradient is dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.config import Bias
from .losses import LOSSES, BinaryCrossEntropy, MultinomialCrossEntropy
from .models import LinearModel

BIAS_MODES = tuple(mode.value for mode in Bias)


@dataclass(frozen=True)
class Objective:
    loss: BinaryCrossEntropy | MultinomialCrossEntropy
    l2: float = 0.0
    bias: str = "free"  # one of BIAS_MODES

    @classmethod
    def of(cls, kind: str, l2: float = 0.0, bias: str = "free") -> Objective:
        """The objective of the model kind ``kind`` (a key of ``losses.LOSSES``)."""
        if bias not in BIAS_MODES:
            raise ValueError(f"bias must be one of {BIAS_MODES}, got {bias!r}")
        return cls(LOSSES[kind], float(l2), bias)

    def penalty(self, model: LinearModel) -> float:
        """l2/2 ||W||^2 [+ l2/2 ||b||^2]."""
        value = 0.5 * self.l2 * float(np.vdot(model.weights, model.weights))
        if self.bias == "penalised":
            value += 0.5 * self.l2 * float(np.vdot(model.bias, model.bias))
        return value

    def value(self, model: LinearModel, x: np.ndarray, t: np.ndarray) -> float:
        """J(W, b) on the batch (x, t)."""
        value = self.loss.loss(model.logits(x), t)
        return value + self.penalty(model) if self.l2 else value

    def value_and_gradient(
        self, model: LinearModel, x: np.ndarray, t: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """J(W, b) and its gradients (dJ/dW, dJ/db) on the batch (x, t)."""
        z = model.logits(x)
        value = self.loss.loss(z, t)
        if self.l2:
            value += self.penalty(model)
        return (value, *self.gradient(model, x, t, z))

    def gradient(
        self,
        model: LinearModel,
        x: np.ndarray,
        t: np.ndarray,
        z: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(dJ/dW, dJ/db) on the batch (x, t), without computing J itself.

        ``z``, if given, are the logits of ``x`` under the current weights.
        """
        z = model.logits(x) if z is None else z
        dz = self.loss.gradient(z, t)
        grad_w = x.T @ dz
        grad_b = dz.sum(axis=0)
        self.finish_gradient(model, grad_w, grad_b)
        return grad_w, grad_b

    def finish_gradient(
        self,
        model: LinearModel,
        grad_w: np.ndarray,
        grad_b: np.ndarray,
        rows=slice(None),
    ) -> None:
        """Make a data gradient the objective's, in place: add the penalty's
        gradient, l2 W [and l2 b], and drop the bias's where there is none;
        ``grad_w`` covers the ``rows`` of W."""
        if self.l2:
            grad_w += self.l2 * model.weights[rows]
            if self.bias == "penalised":
                grad_b += self.l2 * model.bias
        if self.bias == "none":
            grad_b[...] = 0
