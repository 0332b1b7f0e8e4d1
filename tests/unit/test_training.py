import numpy as np
import pytest

from mnist_regression.core.models import LinearModel
from mnist_regression.core.objective import Objective
from mnist_regression.core.passes import FusedPasses
from mnist_regression.core.training import (
    METRICS,
    Dataset,
    DivergenceError,
    Schedule,
    evaluate,
    train,
    with_stable_rate,
)


def blobs(kind="softmax", n=300, d=6, k=3, seed=0, dtype=np.float32):
    """Overlapping Gaussian classes: learnable, not separable."""
    rng = np.random.default_rng(seed)
    classes = 2 if kind == "logistic" else k
    centers = rng.normal(scale=1.5, size=(classes, d))
    x, t = {}, {}
    for split, size in (("train", n), ("val", n // 3), ("test", n // 3)):
        t[split] = rng.integers(0, classes, size=size)
        x[split] = (centers[t[split]] + rng.normal(size=(size, d))).astype(dtype)
    return Dataset(x, t)


def fit(kind="softmax", data=None, seed=0, **schedule):
    data = data or blobs(kind)
    settings = dict(lr=0.5, batch_size=32, anneal_k=0.0, max_epochs=50, patience=3)
    settings.update(schedule)
    l2 = settings.pop("l2", 0.0)
    bias = settings.pop("bias", "free")
    model = LinearModel.zeros(kind, data.x["train"].shape[1], data.n_classes)
    objective = Objective.of(kind, l2, bias)
    history = train(
        model, data, Schedule(**settings), np.random.default_rng(seed), objective
    )
    return model, history, data


@pytest.mark.parametrize("kind", ["logistic", "softmax"])
def test_training_learns(kind):
    _, history, _ = fit(kind)
    start, best = history.at(0), history.at(history.best_epoch)
    assert best["val_loss"] < 0.7 * start["val_loss"]
    assert best["test_accuracy"] > 0.8


def test_same_seed_same_metrics_bit_for_bit():
    _, first, _ = fit(seed=3)
    _, again, _ = fit(seed=3)
    _, other, _ = fit(seed=4)
    assert first.metrics == again.metrics
    assert first.metrics != other.metrics


def test_best_weights_are_restored():
    model, history, data = fit(lr=2.0, max_epochs=40)
    assert history.best_epoch < history.epochs_run
    with FusedPasses(Objective.of(model.kind), data.x, data.t) as passes:
        restored = evaluate(model, passes)
    best = history.at(history.best_epoch)
    for name in restored:
        assert restored[name] == best[name]


def test_early_stopping_waits_patience_evaluations():
    _, history, _ = fit(lr=2.0, patience=2, max_epochs=200)
    losses = history.metrics["val_loss"]
    assert history.epochs_run == history.best_epoch + 2
    assert min(losses) == losses[history.epoch.index(history.best_epoch)]
    assert "not improved in 2" in history.stop_reason


def first_rise(costs: list[float], k: int) -> int | None:
    """The seed code's rule by hand: its costs are those after each step
    (cost[0] after the first), checked from the (k+2)-th on for k rises."""
    for i in range(k + 1, len(costs)):
        if all(costs[j] < costs[j + 1] for j in range(i - k, i)):
            return i + 1  # epoch: steps taken
    return None


@pytest.mark.parametrize("monitor", ["loss", "objective", "scaled_objective"])
def test_the_rising_rule_stops_where_the_seed_code_would(monitor):
    """Full batch (an epoch is one step), a rate that overfits: the run stops at
    the first epoch whose cost rose twice in a row, as computed by hand from the
    recorded losses and weight lengths, and keeps that epoch's weights."""
    l2, data = 0.01, blobs(n=60, d=20)
    model, history, _ = fit(
        data=data,
        batch_size=None,
        lr=0.5,
        max_epochs=500,
        l2=l2,
        patience=2,
        stop_when="rising",
        restore_best=False,
        monitor=monitor,
    )
    loss = np.array(history.metrics["val_loss"])
    norm = np.array(history.metrics["weight_norm"])
    if monitor == "scaled_objective":
        loss = loss / (len(data.x["val"]) * 3)
    costs = loss + (l2 / 2 * norm**2 if monitor != "loss" else 0)
    stop = first_rise(list(costs[1:]), 2)  # the costs after each step
    assert stop is not None and stop < 500, "the run must stop early here"
    assert history.epoch[-1] == stop
    assert "rose 2 times in a row" in history.stop_reason
    assert history.best_epoch == stop  # no restore: the last weights
    assert model.weight_norm() == pytest.approx(norm[-1])


def test_without_restore_the_last_weights_stay():
    restored, history, _ = fit(lr=2.0, max_epochs=40)
    kept, kept_history, data = fit(lr=2.0, max_epochs=40, restore_best=False)
    assert kept_history.metrics == history.metrics  # the same run
    assert history.best_epoch < history.epoch[-1]
    with FusedPasses(Objective.of(kept.kind), data.x, data.t) as passes:
        last = evaluate(kept, passes)
    assert last.items() <= kept_history.at(kept_history.epoch[-1]).items()
    assert kept_history.best_epoch == kept_history.epoch[-1]
    assert not np.array_equal(kept.weights, restored.weights)


def test_a_penalised_bias_decays_and_a_missing_one_stays_zero():
    """Where the data pull the bias nowhere (balanced, centred classes), a
    penalised bias shrinks by (1 - lr l2) each full-batch step and a free one
    does not; with no bias it stays 0 whatever the data."""
    data = blobs(kind="logistic", n=200)
    settings = dict(batch_size=None, lr=0.1, max_epochs=30, patience=100, l2=0.5)
    free, _, _ = fit("logistic", data, **settings)
    penalised, _, _ = fit("logistic", data, bias="penalised", **settings)
    none, _, _ = fit("logistic", data, bias="none", **settings)
    np.testing.assert_array_equal(none.bias, 0)
    assert abs(penalised.bias[0]) < abs(free.bias[0])
    # the penalty's own pull: one step from a bias alone, no data gradient
    model = LinearModel.zeros("logistic", 2, 2, dtype=np.float64)
    model.bias[:] = 1.0
    x = np.zeros((4, 2))
    t = np.array([0, 1, 0, 1])  # with z = b, the data gradient is mean(y - t)
    grad_b = Objective.of("logistic", 0.5, "penalised").gradient(model, x, t)[1]
    y = 1 / (1 + np.exp(-1.0))
    assert grad_b[0] == pytest.approx((y - 0.5) + 0.5 * 1.0)


def test_max_epochs_bounds_the_run():
    _, history, _ = fit(lr=0.01, max_epochs=5, patience=100)
    assert history.epoch == [0, 1, 2, 3, 4, 5]
    assert history.stop_reason == "max_epochs=5 reached"
    assert set(history.metrics) == set(METRICS)


def test_max_steps_ends_the_run_within_an_epoch_and_evaluates_there():
    # 300 examples in batches of 100: step 7 is the first of epoch 3
    _, history, _ = fit(lr=0.3, anneal_k=0.5, batch_size=100, max_steps=7, patience=9)
    assert history.epoch == [0, 1, 2, 3]
    assert history.stop_reason == "max_steps=7 reached"
    assert history.metrics["learning_rate"][-1] == pytest.approx(0.3 / (1 + 0.5 * 7))
    # one example per step: 40 steps are less than an epoch
    _, single, _ = fit(lr=0.01, batch_size=1, max_steps=40, patience=9)
    assert single.epoch == [0, 1]
    assert single.metrics["learning_rate"][-1] == 0.01


def test_max_steps_counts_epochs_at_full_batch():
    _, history, _ = fit(lr=0.3, batch_size=None, max_steps=4, max_epochs=10, patience=9)
    assert history.epoch == [0, 1, 2, 3, 4]
    assert history.stop_reason == "max_steps=4 reached"


def test_annealing_schedule_counts_steps():
    # 300 examples in batches of 100: three steps per epoch
    _, history, _ = fit(lr=0.3, anneal_k=0.5, batch_size=100, max_epochs=3, patience=9)
    expected = [0.3 / (1 + 0.5 * 3 * e) for e in history.epoch]
    np.testing.assert_allclose(history.metrics["learning_rate"], expected)


def test_full_batch_is_one_step_per_epoch_and_ignores_the_seed():
    _, history, _ = fit(lr=0.3, anneal_k=1.0, batch_size=None, max_epochs=4, patience=9)
    np.testing.assert_allclose(
        history.metrics["learning_rate"], [0.3 / (1 + e) for e in history.epoch]
    )
    _, other_seed, _ = fit(seed=9, lr=0.3, anneal_k=1.0, batch_size=None, max_epochs=4)
    assert history.metrics == other_seed.metrics


def test_eval_every_thins_the_history():
    _, history, _ = fit(lr=0.01, eval_every=3, max_epochs=10, patience=100)
    assert history.epoch == [0, 3, 6, 9, 10]


def test_l2_shrinks_the_weights():
    _, plain, _ = fit(max_epochs=10, patience=100)
    _, ridge, _ = fit(max_epochs=10, patience=100, l2=0.5)
    assert ridge.metrics["weight_norm"][-1] < 0.5 * plain.metrics["weight_norm"][-1]


def test_divergence_stops_with_a_clear_error():
    # lr * l2 > 2 makes each step multiply the weights by 1 - lr * l2 < -1
    with pytest.raises(DivergenceError, match="diverged in epoch .*optimizer.lr"):
        fit(lr=50.0, l2=1.0, max_epochs=500, patience=1000)


@pytest.mark.parametrize("lr", [1.0, 10.0, 100.0])
def test_large_rates_train_without_overflow(lr):
    # any RuntimeWarning would fail this suite (filterwarnings = error)
    _, history, _ = fit("logistic", lr=lr, max_epochs=20)
    assert np.isfinite(history.metrics["train_loss"]).all()


@pytest.mark.slow
def test_l2_optimum_matches_scikit_learn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    data = blobs("logistic", n=200, d=4, dtype=np.float64)
    l2 = 0.05
    model, _, _ = fit(
        "logistic", data, lr=1.0, batch_size=None, max_epochs=5000, patience=5000, l2=l2
    )
    n = len(data.t["train"])
    reference = sklearn.LogisticRegression(C=1 / (l2 * n), tol=1e-10, max_iter=10000)
    reference.fit(data.x["train"], data.t["train"])
    np.testing.assert_allclose(model.weights[:, 0], reference.coef_[0], atol=1e-5)
    np.testing.assert_allclose(model.bias, reference.intercept_, atol=1e-5)


@pytest.mark.parametrize("batch_size", [None, 8])
@pytest.mark.parametrize("kind", ["logistic", "softmax"])
def test_training_is_correct_from_any_starting_weights(kind, batch_size):
    """Started from non-zero weights on data with a column that is dark in training
    and lit in validation: the evaluation counts that column's weights and the
    penalty decays them, as plain NumPy does, on both training paths."""
    data = blobs(kind, d=6)
    dark = 5
    data.x["train"][:, dark] = 0.0
    data.x["val"][:, dark] = 3.0
    lr, l2 = 0.1, 0.5
    objective = Objective.of(kind, l2)
    model = LinearModel.zeros(kind, 6, data.n_classes)
    rng = np.random.default_rng(4)
    model.weights[:] = rng.normal(size=model.weights.shape)
    model.bias[:] = rng.normal(size=model.bias.shape)
    start = model.copy()
    schedule = Schedule(lr, batch_size, 0.0, max_epochs=1, patience=10)
    seen = {}

    def on_eval(epoch, values):
        seen[epoch] = model.weights.copy()

    rng = np.random.default_rng(0)
    history = train(model, data, schedule, rng, objective, on_eval)

    def plain_loss(weights, bias, split):
        z = data.x[split] @ weights + bias
        t = data.t[split]
        if kind == "logistic":
            return np.mean(np.logaddexp(0.0, z[:, 0]) - t * z[:, 0])
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -np.mean(log_p[np.arange(len(t)), t])

    expected = plain_loss(start.weights, start.bias, "val")
    assert history.at(0)["val_loss"] == pytest.approx(expected, rel=1e-5)
    # the dark column's data gradient is 0: each step multiplies it by 1 - lr l2
    n, batch = len(data.x["train"]), batch_size or len(data.x["train"])
    steps = -(-n // batch)
    decayed = start.weights[dark] * (1 - lr * l2) ** steps
    np.testing.assert_allclose(seen[1][dark], decayed, rtol=1e-5)
    after = history.at(1)["val_loss"]
    assert np.isfinite(after)
    if batch_size is None:  # one full-batch step: the same as plain NumPy's
        x, t = data.x["train"], data.t["train"]
        _, grad_w, grad_b = objective.value_and_gradient(start, x, t)
        weights = start.weights - lr * grad_w
        bias = start.bias - lr * grad_b
        assert after == pytest.approx(plain_loss(weights, bias, "val"), rel=1e-5)


def test_an_averaged_epoch_ends_with_the_mean_of_its_steps():
    """average=epoch: the model holds the mean of the epoch's iterates, while the
    steps go on from the last iterate, exactly as the plain run takes them."""
    data = blobs("softmax")
    kind, lr, batch = "softmax", 0.5, 100  # 300 examples: three steps an epoch
    objective = Objective.of(kind, 0.1)
    rng = np.random.default_rng(0)
    iterate = LinearModel.zeros(kind, 6, data.n_classes)
    means = []
    for _ in range(2):  # two epochs by hand
        order = rng.permutation(300)
        w, b = [], []
        for start in range(0, 300, batch):
            idx = order[start : start + batch]
            grad_w, grad_b = objective.gradient(
                iterate, data.x["train"][idx], data.t["train"][idx]
            )
            iterate.weights -= lr * grad_w
            iterate.bias -= lr * grad_b
            w.append(iterate.weights.astype(np.float64))
            b.append(iterate.bias.astype(np.float64))
        means.append((np.mean(w, axis=0), np.mean(b, axis=0)))
    seen = []
    model = LinearModel.zeros(kind, 6, data.n_classes)
    schedule = Schedule(lr, batch, 0.0, max_epochs=2, patience=9, average="epoch")
    train(
        model,
        data,
        schedule,
        np.random.default_rng(0),
        objective,
        lambda epoch, values: seen.append((model.weights.copy(), model.bias.copy())),
    )
    for (weights, bias), (mean_w, mean_b) in zip(seen[1:], means, strict=True):
        np.testing.assert_allclose(weights, mean_w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bias, mean_b, rtol=1e-5, atol=1e-6)
    plain = LinearModel.zeros(kind, 6, data.n_classes)
    fitted = Schedule(lr, batch, 0.0, max_epochs=2, patience=9, restore_best=False)
    train(plain, data, fitted, np.random.default_rng(0), objective)
    np.testing.assert_allclose(plain.weights, iterate.weights, rtol=1e-5, atol=1e-6)


def test_averaging_a_full_batch_changes_nothing():
    _, plain, _ = fit(lr=0.3, batch_size=None, max_epochs=5, patience=9)
    _, averaged, _ = fit(
        lr=0.3, batch_size=None, max_epochs=5, patience=9, average="epoch"
    )
    assert plain.metrics == averaged.metrics


@pytest.mark.parametrize("batch_size, share", [(32, 2.0), (None, 1.0)])
def test_the_auto_rate_sits_at_the_edge_of_stability_only_when_averaged(
    batch_size, share
):
    data = blobs("softmax")
    l2 = 0.3
    x = np.hstack([data.x["train"], np.ones((300, 1), np.float32)]).astype(np.float64)
    top = np.linalg.eigvalsh(x.T @ x / 300)[-1] / data.n_classes  # L at w = 0
    schedule = Schedule("auto", batch_size, 0.0, 10, 3, average="epoch")
    rate = with_stable_rate(schedule, data, Objective.of("softmax", l2)).lr
    assert rate == pytest.approx(share / (top + l2), rel=1e-4)
    _, history, _ = fit(lr=rate, batch_size=batch_size, l2=l2, average="epoch")
    assert history.stop_reason  # converged or stopped, without diverging


def test_a_schedule_at_lr_auto_trains_at_its_stable_rate():
    data = blobs("softmax")
    schedule = Schedule("auto", 32, 0.0, 3, 9, average="epoch")
    model = LinearModel.zeros("softmax", 6, data.n_classes)
    history = train(model, data, schedule, np.random.default_rng(0))
    rate = with_stable_rate(schedule, data, Objective.of("softmax")).lr
    assert history.metrics["learning_rate"] == [rate] * 4
