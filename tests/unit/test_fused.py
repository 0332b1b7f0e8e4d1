"""The fused, threaded passes against the naive products they replace."""

import numpy as np
import pytest

from mnist_regression.core import passes as fused
from mnist_regression.core.models import LinearModel
from mnist_regression.core.objective import Objective
from mnist_regression.core.passes import FusedPasses
from mnist_regression.core.training import Dataset, Schedule, train

DARK = [0, 3, 4, 17]  # pixel columns that are 0 in every training image


def images(kind, pixels=True, n=5000, d=30, k=4, seed=0):
    """Values in [0, 1] with some columns never lit in training (as MNIST's
    borders), more rows than one block so that both threads get work; with
    ``pixels``, bytes / 255 as the prepared data are (passes stream bytes)."""
    rng = np.random.default_rng(seed)
    classes = 2 if kind == "logistic" else k
    centres = rng.random((classes, d))
    x, t = {}, {}
    for split, size in (("train", n), ("val", n // 5), ("test", n // 5)):
        t[split] = rng.integers(0, classes, size)
        noisy = centres[t[split]] + 0.3 * rng.normal(size=(size, d))
        x[split] = np.clip(noisy, 0, 1).astype(np.float32)
        if pixels:
            x[split] = np.rint(255 * x[split]).astype(np.uint8) / np.float32(255)
    x["train"][:, DARK] = 0.0
    return Dataset(x, t)


@pytest.mark.parametrize("pixels", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["logistic", "softmax"])
def test_scores_and_gradient_equal_the_naive_products(
    kind, threads, pixels, monkeypatch
):
    monkeypatch.setattr(fused, "BLOCK_ROWS", 700)  # blocks of unequal size
    data = images(kind, pixels)
    model = LinearModel.zeros(kind, 30, data.n_classes)
    rng = np.random.default_rng(1)
    model.weights[:] = rng.normal(size=model.weights.shape)
    model.weights[DARK] = 0.0  # as descent from 0 leaves them
    model.bias[:] = rng.normal(size=model.bias.shape)
    with FusedPasses(Objective.of(kind), data.x, data.t, threads=threads) as passes:
        assert list(passes.keep) == [c for c in range(30) if c not in DARK]
        assert (passes.x["train"].dtype == np.uint8) is pixels
        for split in ("train", "val", "test"):
            x, t = data.x[split], data.t[split]
            got = passes.scores(model, split, gradient=True)
            loss, accuracy = model.loss_and_accuracy(x, t)
            grad_w, grad_b = Objective.of(kind).gradient(model, x, t)
            assert got.loss == pytest.approx(loss, rel=1e-6)
            assert got.accuracy == pytest.approx(accuracy, abs=1.5 / len(t))
            np.testing.assert_allclose(got.grad_w, grad_w[passes.keep], atol=1e-6)
            np.testing.assert_allclose(got.grad_b, grad_b, atol=1e-6)


@pytest.mark.parametrize("pixels", [True, False])
@pytest.mark.parametrize("kind", ["logistic", "softmax"])
def test_full_batch_training_equals_naive_descent(kind, pixels):
    """50 full-batch steps with a penalty: the trainer's weights against plain
    W -= lr (X^T dz / n + l2 W) on all columns, to float32 rounding."""
    data = images(kind, pixels)
    lr, l2, steps = 0.5, 0.01, 50
    model = LinearModel.zeros(kind, 30, data.n_classes)
    schedule = Schedule(lr, None, 0.0, steps, patience=10**6)
    penalised = Objective.of(kind, l2)
    history = train(model, data, schedule, np.random.default_rng(0), penalised)
    assert history.best_epoch == steps  # still improving: the last weights kept
    naive = LinearModel.zeros(kind, 30, data.n_classes)
    for _ in range(steps):
        grad_w, grad_b = penalised.gradient(naive, data.x["train"], data.t["train"])
        naive.weights -= lr * grad_w
        naive.bias -= lr * grad_b
    assert np.all(model.weights[DARK] == 0.0) and np.all(naive.weights[DARK] == 0.0)
    scale = np.abs(naive.weights).max()
    np.testing.assert_allclose(model.weights, naive.weights, atol=1e-5 * scale)
    np.testing.assert_allclose(model.bias, naive.bias, atol=1e-5 * scale)
    loss, accuracy = naive.loss_and_accuracy(data.x["test"], data.t["test"])
    assert history.metrics["test_loss"][-1] == pytest.approx(loss, rel=1e-5)
    assert history.metrics["test_accuracy"][-1] == pytest.approx(accuracy, abs=1e-3)


def test_passes_use_no_more_threads_than_blas_may():
    """joblib's workers (and OMP_NUM_THREADS) hold BLAS to one thread so that
    parallel jobs share the cores: the passes follow."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        assert fused.cores() == 1
        assert (
            FusedPasses(Objective.of("softmax"), {"train": np.ones((4, 3))}, {}).threads
            == 1
        )


def test_pixels_become_the_bytes_they_came_from_and_nothing_else_does():
    rng = np.random.default_rng(3)
    rows = fused.BLOCK_ROWS + 7  # a full block and a short one
    pixels = rng.integers(0, 256, (rows, 5), dtype=np.uint8)
    x = pixels / np.float32(255)
    assert np.array_equal(fused.as_bytes(x), pixels)
    for spoiled in (0.5 / 255, -1 / 255, 256 / 255):
        y = x.copy()
        y[-1, 2] = spoiled  # in the last, short block
        assert fused.as_bytes(y) is None
    assert fused.as_bytes(x.astype(np.float64)) is None
