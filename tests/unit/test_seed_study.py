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


@pytest.mark.parametrize(
    ("printed", "n", "expected"),
    [
        ((0.9877, 0.00005), 405, (400, 400)),  # to four digits: one count only
        ((0.88, 0.005), 2000, (1750, 1770)),  # "about 88%": half a point each way
        ((0.92, 0.005), 2000, (1830, 1850)),
    ],
)
def test_a_printed_percentage_stands_for_a_range_of_counts(printed, n, expected):
    assert seed_study.printed_range(*printed, n) == expected


def test_reproduction_counts_images_from_the_printed_range():
    row = {"test_accuracy_last": 0, "test_images_last": 405}

    def protocol(name, k):
        return seed_study.Protocol(name, None, {**row, "test_accuracy_last": k / 405})

    sentences = seed_study.reproduction(
        "logistic", [protocol("a", 400), protocol("b", 398), protocol("c", 401)]
    )
    (sentence,) = sentences
    assert "stands for 400 of 405 images" in sentence
    assert "a has 400 (reproduces it to the image)" in sentence
    assert "b has 398 (2 images short of it)" in sentence
    assert "c has 401 (1 image beyond it)" in sentence


def test_mcnemar_exact_p_value_by_hand():
    """b = 7 images right only in the first, c = 2 only in the second: the exact
    two-sided p is 2 * P(X <= 2) for X ~ Binomial(9, 1/2) = 2 * 46 / 512."""
    from mnist_regression.study.paired import mcnemar

    a = np.array([1] * 7 + [0] * 2 + [1] * 30 + [0] * 5, bool)
    b = np.array([0] * 7 + [1] * 2 + [1] * 30 + [0] * 5, bool)
    only_a, only_b, p = mcnemar(a, b)
    assert (only_a, only_b) == (7, 2)
    assert p == pytest.approx(2 * (1 + 9 + 36) / 2**9)
    assert mcnemar(a, a)[2] == 1.0  # no discordant image: no evidence


def test_holm_adjusts_step_down_by_hand():
    from mnist_regression.study.paired import holm

    # sorted 0.01, 0.02, 0.04, 0.5: times 4, 3, 2, 1 -> 0.04, 0.06, 0.08, 0.5
    assert holm([0.04, 0.01, 0.5, 0.02]) == pytest.approx([0.08, 0.04, 0.5, 0.06])
    # monotone: a later, smaller product takes the earlier value
    assert holm([0.01, 0.011]) == pytest.approx([0.02, 0.02])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_a_family_summary_names_only_what_holm_keeps():
    from mnist_regression.study.paired import family, summary

    rng = np.random.default_rng(0)
    base = rng.random(2000) < 0.9
    better = base | (rng.random(2000) < 0.5)  # right wherever base is, and more
    same = base.copy()
    tests = family({"base": base, "better": better, "same": same})
    sentence = summary(tests)
    assert "better beats base" in sentence and "better beats same" in sentence
    assert "base beats same" not in sentence and "same beats base" not in sentence


def test_mean_interval_over_seeds_by_hand():
    from mnist_regression.core.stats import mean_interval

    # three seeds: mean 0.9, sd 0.01, t(0.975, 2) = 4.3027
    mean, low, high = mean_interval([0.89, 0.90, 0.91])
    assert mean == pytest.approx(0.90)
    assert high - mean == pytest.approx(4.302653 * 0.01 / np.sqrt(3), rel=1e-5)
    assert mean - low == pytest.approx(high - mean)
    assert mean_interval([0.5]) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    ("model", "steps", "l2"), [("logistic", 2000, 0.01), ("softmax", 2000, 1e-7)]
)
def test_the_delivered_code_runs_as_its_main_py_calls_it(model, steps, l2):
    """`Assignment 1/main.py` at a06fed6: LogisticRegression(learningRate=0.01,
    n=2000, lambd=0.01) and SoftmaxRegression(learningRate=0.01, n=2000,
    lambd=1e-7); the preset composes to those, whatever seed_code.yaml says."""
    from hydra import compose, initialize_config_dir

    from mnist_regression.common.config import train_config
    from mnist_regression.tracking.provenance import CONF

    overrides = [f"model={model}", "experiment=seed_delivered"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = train_config(compose("config", overrides=overrides))
    assert cfg.optimizer.max_steps == steps and cfg.optimizer.lr == 0.01
    assert cfg.model.l2 == l2 and cfg.data.scale == 255


def test_the_readings_verdict_follows_the_paired_tests():
    """10 digits: a reading the study's about-88% excludes is named with its
    distance, and the paired tests, where they separate readings, say so;
    'cannot tell them apart' only where neither does."""
    from mnist_regression.study.paired import Paired

    def reading(name, val, last):
        row = {
            "val_accuracy": val / 2000,
            "val_images": 2000,
            "test_accuracy_last": last / 2000,
            "test_images_last": 2000,
        }
        return seed_study.Reading(name, None, row)

    rows = [reading("full batch", 1760, 1840), reading("one example", 1671, 1791)]
    tests = [Paired("one example", "full batch", 90, 240, 1e-9, 1e-8)]
    said = seed_study.verdict("softmax", rows, tests)
    assert "the study's about 88% (validation)" in said
    assert "exclude one example (one example by 118 images over all of them)" in said
    assert "separate one example from full batch (Holm p < 1e-4)" in said
    assert "cannot tell" not in said
    quiet = seed_study.verdict("softmax", rows[:1], [])
    assert "cannot tell the readings apart" in quiet
