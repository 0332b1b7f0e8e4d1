"""The rule that picks a task's registered champion, and what it says."""

from __future__ import annotations

from mnist_regression.study.champion import Candidate, choose

N = 389  # validation images of 2 vs 3


def candidate(label, k, loss, stable=True, digest=None):
    return Candidate("binary", k / N, digest or label, label, loss, N, stable)


def test_a_rate_beyond_the_stability_limit_never_wins_against_a_stable_one():
    choice = choose(
        [candidate("lr=1", 379, 0.09, stable=False), candidate("lr=0.1", 377, 0.10)]
    )
    assert choice.best.label == "lr=0.1" and choice.left_out == 1
    assert choice.runner_up is None


def test_only_unstable_candidates_still_give_a_champion():
    choice = choose([candidate("lr=1", 379, 0.09, stable=False)])
    assert choice.best.label == "lr=1" and choice.left_out == 0


def test_within_one_image_the_validation_loss_decides():
    choice = choose(
        [
            candidate("a", 378, 0.110),
            candidate("b", 377, 0.095),  # one image fewer, lower loss: wins
            candidate("c", 376, 0.050),  # two images fewer: out of the tie
        ]
    )
    assert choice.best.label == "b" and choice.runner_up.label == "a"
    margin = "1 validation image fewer, a validation loss lower by 0.015"
    assert choice.margin() == margin
    tags = choice.tags()
    assert tags["selection.val_accuracy"].startswith("377/389 (96.92%, 95% interval")
    assert tags["selection.runner_up"] == "a"
    assert "runner-up a" in choice.description()


def test_the_same_weights_count_once():
    choice = choose(
        [
            candidate("models/0", 377, 0.1, digest="w"),
            candidate("l2/0", 377, 0.1, digest="w"),
        ]
    )
    assert choice.among == 1 and choice.runner_up is None
