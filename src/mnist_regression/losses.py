"""Mean cross-entropy losses computed from logits, with their gradients.

Shapes: ``z`` (n,) logits of the positive class for the logistic loss, (n, k)
for softmax; ``t`` (n,) integer targets. ``*_loss`` returns the mean loss,
``*_grad`` its gradient with respect to ``z`` (already divided by n; a training
step needs only this):

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


def logistic_loss(z: np.ndarray, t: np.ndarray) -> float:
    t = t.astype(z.dtype, copy=False)
    return float(np.mean(np.logaddexp(0.0, z) - t * z))


def logistic_grad(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    grad = sigmoid(z)
    grad -= t.astype(z.dtype, copy=False)
    grad /= len(z)
    return grad


# The softmax functions work on the (k, n) transpose of the logits: NumPy
# vectorises a reduction over the rows of a C-ordered array, while a reduction
# over the 10 values of each row of an (n, 10) array runs about 10x slower.


def log_softmax(z: np.ndarray) -> np.ndarray:
    """(n, k) log-probabilities of the (n, k) logits z."""
    return _log_softmax_t(z).T


def _shifted_t(z: np.ndarray) -> np.ndarray:
    """A (k, n) copy of z with each example's largest logit moved to 0."""
    shifted = z.T.copy()
    shifted -= shifted.max(axis=0)
    return shifted


def _log_softmax_t(z: np.ndarray) -> np.ndarray:
    shifted = _shifted_t(z)
    shifted -= np.log(np.exp(shifted).sum(axis=0))
    return shifted


def softmax_loss(z: np.ndarray, t: np.ndarray) -> float:
    return float(-np.mean(_log_softmax_t(z)[t, np.arange(len(t))]))


def softmax_grad(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """softmax(z) - onehot(t), over n, as an (n, k) view of a (k, n) array."""
    grad = _shifted_t(z)
    np.exp(grad, out=grad)
    grad /= grad.sum(axis=0)
    grad[t, np.arange(len(t))] -= 1.0
    grad /= len(t)
    return grad.T
