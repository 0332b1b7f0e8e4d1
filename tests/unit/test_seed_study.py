"""Noise of the comparison with the seed study, and the figure of its mistakes."""

import numpy as np
import pytest

from mnist_regression.study import original as seed_study
from mnist_regression.study.figures import worst_misclassified
from mnist_regression.study.original import over_seeds, wilson, within_noise


def test_wilson_interval_of_the_studys_two_vs_three_score():
    # 400 of 405 images: the interval is asymmetric, shorter towards 100%
    low, high = wilson(400 / 405, 405)
    assert low == pytest.approx(0.9714, abs=1e-4)
    assert high == pytest.approx(0.9947, abs=1e-4)
    assert high - 400 / 405 < 400 / 405 - low


def test_wilson_interval_narrows_with_the_set():
    small, large = wilson(0.9, 200), wilson(0.9, 20_000)
    assert small[1] - small[0] > 9 * (large[1] - large[0])


@pytest.mark.parametrize(
    ("ours", "n", "study", "expected"),
    [
        (400 / 405, 405, (0.9877, 0.00005), True),  # the same count
        (390 / 405, 405, (0.9877, 0.00005), False),  # ten images fewer
        (0.905, 2000, (0.92, 0.005), True),  # "about 92%" reaches down to 91.5%
        (0.890, 2000, (0.92, 0.005), False),
    ],
)
def test_within_noise_widens_our_interval_by_the_studys_rounding(
    ours, n, study, expected
):
    assert within_noise(ours, n, study) is expected


def test_over_seeds_mean_and_sample_sd():
    rows = [
        {
            "val_accuracy": v,
            "test_accuracy": v,
            "test_accuracy_last": v,
            "val_images": 10,
            "test_images": 20,
            "test_images_last": 5,
        }
        for v in (0.9, 0.92, 0.94)
    ]
    summary = over_seeds(rows)
    assert summary["seeds"] == 3
    assert summary["test_accuracy"]["mean"] == pytest.approx(0.92)
    assert summary["test_accuracy"]["sd"] == pytest.approx(0.02)


def test_the_mistakes_figure_shows_the_most_confident_first():
    rng = np.random.default_rng(0)
    n, classes = 200, 10
    t = rng.integers(0, classes, n)
    logits = rng.normal(scale=3.0, size=(n, classes))
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    x = rng.random((n, 784))
    fig = worst_misclassified(x, t, log_probs, count=12)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 12
    shown = [float(title.split("\n")[1].split("%")[0]) for title in titles]
    assert shown == sorted(shown, reverse=True)
    predicted = log_probs.argmax(axis=1)
    wrong = predicted != t
    best = 100 * np.exp(log_probs[wrong, predicted[wrong]]).max()
    assert shown[0] == pytest.approx(best, abs=0.05)
    assert all(" read as " in title for title in titles)


def test_a_reading_is_named_by_its_batch():
    def job(batch):
        return type("J", (), {"config": {"optimizer": {"batch_size": batch}}})()

    names = [seed_study.reading(job(b)) for b in (None, 1, 32)]
    assert names == ["full batch", "one example", "batch 32"]
