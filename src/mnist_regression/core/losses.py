"""The two cross-entropy losses, one object per model kind, from logits.

Shapes: ``z`` (n, k) logits, k = 1 (the positive class) for the logistic loss;
``t`` (n,) integer targets. ``loss`` is the mean loss, ``gradient`` its gradient
with respect to ``z`` (already divided by n; a training step needs only this),
``probabilities`` and ``predict`` what the logits say:

    logistic:  L = mean_i [ log(1 + exp(z_i)) - t_i z_i ]
               dL/dz_i = (y_i - t_i) / n
    softmax:   L = mean_i [ logsumexp(z_i) - z_{i, t_i} ]
               dL/dz_i = (y_i - onehot(t_i)) / n

with y the sigmoid or softmax of z. Both are exact for any finite z: no exp of a
large positive number is ever taken.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow, via tanh."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def log_softmax(z: np.ndarray) -> np.ndarray:
    """(n, k) log-probabilities of the (n, k) logits z."""
    return _log_softmax_t(z).T


# The softmax functions work on the (k, n) transpose of the logits: NumPy
# vectorises a reduction over the rows of a C-ordered array, while a reduction
# over the 10 values of each row of an (n, 10) array runs about 10x slower.


def _shifted_t(z: np.ndarray) -> np.ndarray:
    """A (k, n) copy of z with each example's largest logit moved to 0."""
    shifted = z.T.copy()
    shifted -= shifted.max(axis=0)
    return shifted


def _log_softmax_t(z: np.ndarray) -> np.ndarray:
    shifted = _shifted_t(z)
    shifted -= np.log(np.exp(shifted).sum(axis=0))
    return shifted


class BinaryCrossEntropy:
    """Logistic regression: one logit per example, that of the positive class."""

    model = "logistic"
    task = "binary"

    def outputs(self, n_classes: int) -> int:
        return 1

    def curvature_factor(self, n_classes: int) -> float:
        """The Hessian of the loss at w = 0 over that of a squared loss: y(1 - y)
        at y = 1/2."""
        return 0.25

    def loss(self, z: np.ndarray, t: np.ndarray) -> float:
        z = z[:, 0]
        t = t.astype(z.dtype, copy=False)
        return float(np.mean(np.logaddexp(0.0, z) - t * z))

    def gradient(self, z: np.ndarray, t: np.ndarray, n: int | None = None):
        """(n, 1) dL/dz of the mean over ``n`` examples (default: these)."""
        grad = sigmoid(z[:, 0])
        grad -= t.astype(z.dtype, copy=False)
        grad /= n or len(z)
        return grad[:, None]

    def probabilities(self, z: np.ndarray) -> np.ndarray:
        """(n,) probability of the positive class."""
        return sigmoid(z[:, 0])

    def predict(self, z: np.ndarray) -> np.ndarray:
        return (z[:, 0] > 0).astype(np.int64)


class MultinomialCrossEntropy:
    """Softmax regression: one logit per class."""

    model = "softmax"
    task = "multiclass"

    def outputs(self, n_classes: int) -> int:
        return n_classes

    def curvature_factor(self, n_classes: int) -> float:
        """The largest eigenvalue of diag(p) - p p^T at p = 1/k."""
        return 1.0 / n_classes

    def loss(self, z: np.ndarray, t: np.ndarray) -> float:
        return float(-np.mean(_log_softmax_t(z)[t, np.arange(len(t))]))

    def gradient(self, z: np.ndarray, t: np.ndarray, n: int | None = None):
        """softmax(z) - onehot(t), over ``n`` (default: these examples), as an
        (n, k) view of a (k, n) array."""
        grad = _shifted_t(z)
        np.exp(grad, out=grad)
        grad /= grad.sum(axis=0)
        grad[t, np.arange(len(t))] -= 1.0
        grad /= n or len(t)
        return grad.T

    def probabilities(self, z: np.ndarray) -> np.ndarray:
        """(n, k) class probabilities."""
        return np.exp(log_softmax(z))

    def predict(self, z: np.ndarray) -> np.ndarray:
        return z.argmax(1)


# One map from model name to its loss; its task names the prepared data set.
LOSSES = {
    loss.model: loss for loss in (BinaryCrossEntropy(), MultinomialCrossEntropy())
}
TASKS = {name: loss.task for name, loss in LOSSES.items()}
