"""Losses and gradients: finite differences, extreme logits, scikit-learn's optimum."""

import numpy as np
import pytest

from mnist_regression.core.losses import LOSSES
from mnist_regression.core.models import LinearModel, curvature_at_zero
from mnist_regression.core.objective import Objective


def loss_and_grad(model, x, t, l2=0.0, bias="free"):
    return Objective.of(model.kind, l2, bias).value_and_gradient(model, x, t)


def problem(kind, seed=0, n=12, d=5, k=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    t = rng.integers(0, 2 if kind == "logistic" else k, size=n)
    model = LinearModel.zeros(kind, d, k, dtype=np.float64)
    model.weights[:] = rng.normal(size=model.weights.shape)
    model.bias[:] = rng.normal(size=model.bias.shape)
    return model, x, t


def numerical_grad(model, x, t, l2, bias, eps=1e-6):
    grads = []
    for array in (model.weights, model.bias):
        grad = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + eps
            up = loss_and_grad(model, x, t, l2, bias)[0]
            array[i] = old - eps
            down = loss_and_grad(model, x, t, l2, bias)[0]
            array[i] = old
            grad[i] = (up - down) / (2 * eps)
        grads.append(grad)
    return grads


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12)


@pytest.mark.parametrize("kind", ["logistic", "softmax"])
@pytest.mark.parametrize(
    ("l2", "bias"), [(0.0, "free"), (0.3, "free"), (0.3, "penalised")]
)
def test_gradient_matches_finite_differences(kind, l2, bias):
    model, x, t = problem(kind)
    _, grad_w, grad_b = loss_and_grad(model, x, t, l2, bias)
    num_w, num_b = numerical_grad(model, x, t, l2, bias)
    assert relative_error(grad_w, num_w) < 1e-6
    assert relative_error(grad_b, num_b) < 1e-6


@pytest.mark.parametrize("kind", ["logistic", "softmax"])
def test_a_model_without_bias_gets_no_bias_gradient(kind):
    model, x, t = problem(kind)
    _, grad_w, grad_b = loss_and_grad(model, x, t, 0.3, "none")
    free_w, _ = loss_and_grad(model, x, t, 0.3, "free")[1:]
    np.testing.assert_array_equal(grad_b, 0)
    np.testing.assert_array_equal(grad_w, free_w)


@pytest.mark.parametrize("kind", ["logistic", "softmax"])
def test_penalty_is_half_l2_times_squared_norm(kind):
    model, x, t = problem(kind)
    plain = loss_and_grad(model, x, t)[0]
    penalised = loss_and_grad(model, x, t, l2=0.5)[0]
    assert penalised - plain == pytest.approx(0.25 * np.sum(model.weights**2))
    with_bias = loss_and_grad(model, x, t, l2=0.5, bias="penalised")[0]
    assert with_bias - penalised == pytest.approx(0.25 * np.sum(model.bias**2))


def test_logistic_loss_against_direct_formula():
    z = np.array([[-3.0], [-0.5], [0.0], [2.0]])
    t = np.array([1, 0, 1, 0])
    y = 1 / (1 + np.exp(-z[:, 0]))
    direct = -np.mean(t * np.log(y) + (1 - t) * np.log(1 - y))
    assert LOSSES["logistic"].loss(z, t) == pytest.approx(direct)
    np.testing.assert_allclose(LOSSES["logistic"].probabilities(z), y)


def test_softmax_loss_against_direct_formula():
    z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = np.array([1, 0])
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    direct = -np.mean(np.log(probs[[0, 1], t]))
    assert LOSSES["softmax"].loss(z, t) == pytest.approx(direct)
    np.testing.assert_allclose(LOSSES["softmax"].probabilities(z), probs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_stay_finite_and_exact(dtype):
    # RuntimeWarnings are errors in this suite: an overflow would fail the test.
    z = np.array([[-1000.0], [1000.0], [-1000.0], [1000.0]], dtype)
    t = np.array([1, 1, 0, 0])
    binary = LOSSES["logistic"]
    loss, grad = binary.loss(z, t), binary.gradient(z, t)
    assert loss == pytest.approx((1000 + 0 + 0 + 1000) / 4)
    np.testing.assert_allclose(grad[:, 0], np.array([-1, 0, 0, 1]) / 4)
    zs = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]], dtype)
    ts = np.array([1, 2])
    loss, grad = LOSSES["softmax"].loss(zs, ts), LOSSES["softmax"].gradient(zs, ts)
    assert loss == pytest.approx((2000 + 1 + np.log1p(np.exp(-1))) / 2, rel=1e-5)
    assert np.isfinite(grad).all()


def test_predictions():
    model = LinearModel.zeros("logistic", 2, 2)
    model.weights[:, 0] = [1, -1]
    np.testing.assert_array_equal(model.predict(np.array([[2, 1], [1, 2]])), [1, 0])
    softmax = LinearModel.zeros("softmax", 2, 3)
    softmax.bias[:] = [0, 1, 0]
    assert softmax.predict(np.zeros((1, 2)))[0] == 1


def test_overflowing_logits_raise_floating_point_error():
    model = LinearModel.zeros("softmax", 2, 3)
    model.weights[:] = np.float32(3e38)
    with pytest.raises(FloatingPointError):
        model.logits(np.ones((1, 2), np.float32))


def test_unknown_kind():
    with pytest.raises(ValueError, match="logistic"):
        LinearModel.zeros("svm", 2, 2)


@pytest.mark.parametrize(("kind", "n_classes"), [("logistic", 2), ("softmax", 4)])
def test_curvature_at_zero_is_the_top_eigenvalue_of_the_loss_hessian(kind, n_classes):
    """The closed form against power iteration on Hessian-vector products taken
    from the model's own gradient (central differences, float64)."""
    rng = np.random.default_rng(7)
    x = rng.random((300, 12))
    t = rng.integers(0, n_classes, 300)
    model = LinearModel.zeros(kind, 12, n_classes, dtype=np.float64)
    shapes = (model.weights.shape, model.bias.shape)
    size_w = model.weights.size

    def gradient_at(v: np.ndarray) -> np.ndarray:
        model.weights = v[:size_w].reshape(shapes[0]).copy()
        model.bias = v[size_w:].reshape(shapes[1]).copy()
        grad_w, grad_b = Objective.of(model.kind).gradient(model, x, t)
        return np.concatenate([grad_w.ravel(), grad_b.ravel()])

    v = rng.standard_normal(size_w + model.bias.size)
    eigenvalue = 0.0
    for _ in range(200):
        v /= np.linalg.norm(v)
        eps = 1e-4
        hv = (gradient_at(eps * v) - gradient_at(-eps * v)) / (2 * eps)
        eigenvalue = float(v @ hv)
        v = hv
    assert curvature_at_zero(x, kind, n_classes) == pytest.approx(eigenvalue, rel=1e-4)
