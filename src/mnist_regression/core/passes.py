"""Passes over a whole data set, fused and spread over the cores, and pixels
kept as bytes.

A full-batch step of the naive kind reads the training set twice: once for the
logits ``X W``, once more for the gradient ``X^T dz``, with the loss in between.
Here each block of rows (``BLOCK_ROWS``) goes through the logits, the loss, the
accuracy and its share of the gradient while it is still in cache, and the
blocks are split between threads, one per core, with BLAS held to one thread
each (threadpoolctl). Pixel columns that are zero in every training image, and
whose weights are 0 at the start, are dropped from the products: gradient
descent never moves those weights (their data gradient is exactly 0, and so is
the penalty's), so their contribution to every logit stays exactly 0; a column
with a weight is kept, so training may start from any weights. Pixels are kept
as the bytes they came from, a quarter of the memory to stream: a block is cast
to floats 0-255 and the 1/255 moves to the weights and the gradient. Results equal the
naive products up to float32 rounding (the sums run in another order).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from .models import finite_logits
from .objective import Objective

BLOCK_ROWS = 1024  # 1,024 x 692 float32 rows: 2.8 MB, one core's share of L2/L3
_controller = None
PIXEL_SCALE = np.float32(255)


def as_bytes(x: np.ndarray) -> np.ndarray | None:
    """``x`` (float32 pixels / 255) as the C-ordered bytes it came from, or None
    if it holds anything else. ``bytes / PIXEL_SCALE`` gives back exactly ``x``.
    Block by block, so that each block's checks run while it is in cache."""
    if x.dtype != np.float32 or not x.size:
        return None
    pixels = np.empty(x.shape, np.uint8)
    buffer = np.empty((BLOCK_ROWS, *x.shape[1:]), np.float32)
    for start in range(0, len(x), BLOCK_ROWS):
        block = x[start : start + BLOCK_ROWS]
        scaled = buffer[: len(block)]
        np.multiply(block, PIXEL_SCALE, out=scaled)
        np.rint(scaled, out=scaled)
        if scaled.min() < 0 or scaled.max() > 255:
            return None
        out = pixels[start : start + BLOCK_ROWS]
        np.copyto(out, scaled, casting="unsafe")
        back = np.divide(out, PIXEL_SCALE, out=scaled, dtype=np.float32)
        if not np.array_equal(back, block):
            return None
    return pixels


def cores() -> int:
    """The threads a pass may use: the processors this process may run on
    (SLURM's cpus_per_task, taskset), and no more than its BLAS may use, which
    is how joblib's workers and OMP_NUM_THREADS / OPENBLAS_NUM_THREADS ask a
    process to share the machine."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    blas = [lib.num_threads for lib in _blas().select(user_api="blas").lib_controllers]
    return max(1, min([available, *blas]))


def _blas():
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


@dataclass
class Scores:
    """One pass: mean loss and accuracy (the data term alone), and, if asked for,
    the objective's gradient (dJ/dW over the kept columns, dJ/db)."""

    loss: float
    accuracy: float
    grad_w: np.ndarray | None = None
    grad_b: np.ndarray | None = None


class FusedPasses:
    """Loss, accuracy and gradient of every split of a data set, fused.

    ``weights``: the weights training starts from (default: zeros); columns dark
    in training are dropped only where these are 0.
    """

    def __init__(
        self,
        objective: Objective,
        x: Mapping[str, np.ndarray],
        t: Mapping[str, np.ndarray],
        weights: np.ndarray | None = None,
        threads: int | None = None,
    ):
        self.objective = objective
        self.loss = objective.loss
        # each split as bytes where it holds pixels; then its kept columns
        as_pixels = {split: as_bytes(x[split]) for split in x}
        source = {s: x[s] if b is None else b for s, b in as_pixels.items()}
        used = source["train"].any(axis=0)
        if weights is not None:
            used |= np.asarray(weights).any(axis=1)
        self.keep = np.flatnonzero(used)
        self.dropped = np.flatnonzero(~used)
        self.x = {s: np.take(a, self.keep, axis=1) for s, a in source.items()}
        self.t = dict(t)
        self.threads = threads or cores()
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self) -> FusedPasses:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def scores(self, model, split: str, gradient: bool = False) -> Scores:
        """The scores of one split (and its data gradient, if asked for)."""
        return self.score_splits(model, [split], gradient=split if gradient else None)[
            split
        ]

    def score_splits(
        self, model, splits: list[str], gradient: str | None = None
    ) -> dict[str, Scores]:
        """The scores of ``splits`` at the current weights, in one dispatch over
        the threads, with the objective's gradient on the split ``gradient``."""
        if model.weights[self.dropped].any():
            raise ValueError(
                "weights of columns dropped as dark in training are not 0: pass "
                "the starting weights to FusedPasses"
            )
        weights = model.weights[self.keep]
        # bytes are pixel values 0-255: their logits are bytes @ (W / 255)
        per_byte = weights / PIXEL_SCALE
        shares = self._shares(splits, gradient)

        def work(share: list[tuple]) -> dict[str, _Totals]:
            return self._score_blocks(
                share, splits, gradient, (weights, per_byte), model.bias
            )

        if self._pool is None or len(shares) == 1:
            parts = [work(share) for share in shares]
        else:
            with _blas().limit(limits=1, user_api="blas"):
                parts = list(self._pool.map(work, shares))
        return {
            split: self._combine(
                model, split, [part[split] for part in parts], gradient
            )
            for split in splits
        }

    def _shares(self, splits: list[str], gradient: str | None) -> list[list[tuple]]:
        """The blocks of rows (cost, split, first row) split between the threads,
        greedily, largest first: a block with its gradient costs two products."""
        blocks = [
            (2 if split == gradient else 1, split, start)
            for split in splits
            for start in range(0, len(self.x[split]), BLOCK_ROWS)
        ]
        shares: list[list] = [[] for _ in range(min(self.threads, len(blocks)))]
        loads = [0] * len(shares)
        for block in sorted(blocks, key=lambda b: -b[0]):
            lightest = loads.index(min(loads))
            shares[lightest].append(block)
            loads[lightest] += block[0]
        return shares

    def _score_blocks(self, share, splits, gradient, weights, bias) -> dict:
        """One thread's share: each block's logits, loss, hits and gradient while
        the block is in cache. ``weights``: W of the kept rows, and W / 255."""
        sums = {split: _Totals() for split in splits}
        buffer = np.empty((BLOCK_ROWS, len(self.keep)), np.float32)
        for _, split, start in share:
            x, t = self.x[split], self.t[split]
            xb, tb = x[start : start + BLOCK_ROWS], t[start : start + BLOCK_ROWS]
            w = weights[0]
            if xb.dtype == np.uint8:
                buffer[: len(xb)] = xb
                xb, w = buffer[: len(xb)], weights[1]
            z = finite_logits(xb, w, bias)
            total = sums[split]
            total.loss += self.loss.loss(z, tb) * len(tb)
            total.correct += int(np.count_nonzero(self.loss.predict(z) == tb))
            if split == gradient:
                dz = self.loss.gradient(z, tb, len(x))
                total.add_gradient(xb.T @ dz, dz.sum(axis=0))
        return sums

    def _combine(self, model, split: str, totals: list[_Totals], gradient) -> Scores:
        """The threads' totals of one split as its Scores; with the objective's
        gradient (the penalty's added) if it is the split ``gradient``."""
        n = len(self.x[split])
        scores = Scores(
            sum(p.loss for p in totals) / n, sum(p.correct for p in totals) / n
        )
        if split == gradient:
            grads = [p for p in totals if p.grad_w is not None]
            scores.grad_w = sum(p.grad_w for p in grads[1:]) + grads[0].grad_w
            if self.x[split].dtype == np.uint8:
                scores.grad_w /= PIXEL_SCALE
            scores.grad_b = sum(p.grad_b for p in grads[1:]) + grads[0].grad_b
            self.objective.finish_gradient(
                model, scores.grad_w, scores.grad_b, self.keep
            )
        return scores


@dataclass
class _Totals:
    """One thread's sums over its blocks of one split."""

    loss: float = 0.0
    correct: int = 0
    grad_w: np.ndarray | None = None
    grad_b: np.ndarray | None = None

    def add_gradient(self, grad_w: np.ndarray, grad_b: np.ndarray) -> None:
        if self.grad_w is None:
            self.grad_w, self.grad_b = grad_w, grad_b
        else:
            self.grad_w += grad_w
            self.grad_b += grad_b
