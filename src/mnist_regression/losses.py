"""Mean cross-entropy losses computed from logits, with their gradients.

Shapes: ``z`` (n,) logits of the positive class for the logistic loss, (n, k)
for softmax; ``t`` (n,) integer targets. Each function returns the mean loss and
its gradient with respect to ``z`` (already divided by n), from one forward pass:

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


def logistic_loss_grad(z: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
    grad = sigmoid(z) - t.astype(z.dtype, copy=False)
    grad /= len(z)
    return logistic_loss(z, t), grad


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_loss(z: np.ndarray, t: np.ndarray) -> float:
    return float(-np.mean(log_softmax(z)[np.arange(len(t)), t]))


def softmax_loss_grad(z: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
    log_probs = log_softmax(z)
    rows = np.arange(len(t))
    loss = float(-np.mean(log_probs[rows, t]))
    grad = np.exp(log_probs)
    grad[rows, t] -= 1.0
    grad /= len(t)
    return loss, grad
