"""Logistic and softmax regression: weights, logits and predictions. No I/O.

A model holds ``weights`` W (d, k) and ``bias`` b (k,), with k = 1 for logistic
regression and k = number of classes for softmax; its scores of a batch X (n, d)
are the logits X W + b (n, k). What training minimises is in ``objective``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .losses import LOSSES

KINDS = tuple(LOSSES)


def finite_logits(x: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``x @ weights + bias``; raises FloatingPointError if a score overflowed:
    the weights have diverged."""
    with np.errstate(over="raise", invalid="raise"):
        z = x @ weights + bias
    if not np.isfinite(z).all():
        raise FloatingPointError("non-finite logits: the weights have diverged")
    return z


@dataclass
class LinearModel:
    kind: str
    weights: np.ndarray
    bias: np.ndarray

    @classmethod
    def zeros(cls, kind: str, n_features: int, n_classes: int, dtype=np.float32):
        if kind not in LOSSES:
            raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
        k = LOSSES[kind].outputs(n_classes)
        return cls(kind, np.zeros((n_features, k), dtype), np.zeros(k, dtype))

    @property
    def loss(self):
        """The model's cross-entropy (``losses``)."""
        return LOSSES[self.kind]

    def copy(self) -> LinearModel:
        return LinearModel(self.kind, self.weights.copy(), self.bias.copy())

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, k) scores (see ``finite_logits``)."""
        return finite_logits(x, self.weights, self.bias)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.loss.predict(self.logits(x))

    def loss_and_accuracy(
        self, x: np.ndarray, t: np.ndarray, z: np.ndarray | None = None
    ) -> tuple[float, float]:
        """Mean cross-entropy (without the penalty) and accuracy, from one pass.

        ``z``, if given, are the logits of ``x`` under the current weights.
        """
        z = self.logits(x) if z is None else z
        return self.loss.loss(z, t), float(np.mean(self.loss.predict(z) == t))

    def weight_norm(self) -> float:
        """Euclidean length of W (the bias excluded)."""
        return float(np.linalg.norm(self.weights))


def curvature_at_zero(
    x: np.ndarray, kind: str, n_classes: int, rtol: float = 1e-6, max_iters: int = 100
) -> float:
    """Largest eigenvalue L of the Hessian of the mean cross-entropy at W = 0, b = 0.

    At zero weights every probability is 1/k. For the logistic loss the Hessian is
    X~^T X~ / (4n), with X~ = [X, 1]; for softmax it is X~^T X~ / n (x)
    (diag(p) - p p^T), whose second factor has largest eigenvalue 1/k. So
    L = c * lambda_max(X~^T X~ / n), c = 1/4 (logistic) or 1/k (softmax), found by
    power iteration on X~ in the data's precision (at least float32) until the
    estimate moves by less than ``rtol``. It starts from the mean row of X~, which
    for non-negative data such as pixels is close to the top eigenvector: three
    products of MNIST suffice (15 ms). Gradient descent with the penalty l2 is
    stable near zero for rates below 2 / (L + l2).
    """
    n, d = x.shape
    dtype = np.result_type(x.dtype, np.float32)
    v = np.append(x.mean(axis=0), 1.0).astype(dtype)
    if not np.any(v[:d]):
        v[:] = 1.0
    v /= np.linalg.norm(v)
    eigenvalue = 0.0
    for _ in range(max_iters):
        xv = x @ v[:d] + v[d]
        w = np.append(x.T @ xv, xv.sum()) / dtype.type(n)
        previous, eigenvalue = eigenvalue, float(np.linalg.norm(w))
        if eigenvalue == 0.0 or abs(eigenvalue - previous) <= rtol * eigenvalue:
            break
        v = w / dtype.type(eigenvalue)
    return LOSSES[kind].curvature_factor(n_classes) * eigenvalue


def stable_rate(
    x: np.ndarray, kind: str, n_classes: int, l2: float, edge: bool = False
) -> float:
    """``optimizer.lr=auto``: 1 / (L + l2), half the largest rate at which gradient
    descent from w = 0 is stable (``curvature_at_zero``); with ``edge``, that
    largest rate itself, 2 / (L + l2), where averaged steps damp the oscillation.
    It falls as l2 grows."""
    return (2.0 if edge else 1.0) / (curvature_at_zero(x, kind, n_classes) + l2)
