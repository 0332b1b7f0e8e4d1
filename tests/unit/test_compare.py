"""The tolerance check of a recomputed study against a committed one."""

import copy
import json
import subprocess
import sys

import pytest

from mnist_regression.study.compare import differences


@pytest.fixture
def study() -> dict:
    sizes = {"val_images": 400, "test_images": 2000, "test_images_last": 400}
    return {
        "logistic": {
            "seeds": 2,
            "val_accuracy": {"mean": 0.97, "sd": 0.001},
            "test_accuracy": {"mean": 0.975, "sd": 0.001},
            "test_accuracy_last": {"mean": 0.985, "sd": 0.002},
            **sizes,
        },
        "softmax": {
            "seeds": 2,
            "val_accuracy": {"mean": 0.91, "sd": 0.001},
            "test_accuracy": {"mean": 0.92, "sd": 0.001},
            "test_accuracy_last": {"mean": 0.94, "sd": 0.001},
            "val_images": 2000,
            "test_images": 10000,
            "test_images_last": 2000,
        },
        "softmax_l2": {
            "l2=0": {"val_accuracy": 0.9, "val_loss": 0.31, "epochs_run": 9}
        },
        "seed_readings": {"logistic": {"full batch": {"within_noise": True}}},
    }


def test_the_same_study_passes(study):
    assert differences(copy.deepcopy(study), study) == []


def test_an_accuracy_may_move_by_one_image_of_its_set(study):
    ours = copy.deepcopy(study)
    ours["softmax_l2"]["l2=0"]["val_accuracy"] += 0.9 / 2000  # under one image
    ours["logistic"]["test_accuracy_last"]["mean"] += 0.9 / 400
    assert differences(ours, study) == []
    ours["softmax_l2"]["l2=0"]["val_accuracy"] += 0.2 / 2000  # past one image
    (line,) = differences(ours, study)
    assert line.startswith("softmax_l2.l2=0.val_accuracy:")
    assert "one image of 2,000" in line


def test_losses_are_relative_and_counts_exact(study):
    ours = copy.deepcopy(study)
    ours["softmax_l2"]["l2=0"]["val_loss"] *= 1 + 5e-6
    assert differences(ours, study) == []
    ours["softmax_l2"]["l2=0"]["val_loss"] *= 1 + 5e-5
    ours["softmax_l2"]["l2=0"]["epochs_run"] = 10
    ours["seed_readings"]["logistic"]["full batch"]["within_noise"] = False
    found = differences(ours, study)
    assert [line.split(":")[0] for line in found] == [
        "softmax_l2.l2=0.val_loss",
        "softmax_l2.l2=0.epochs_run",
        "seed_readings.logistic.full batch.within_noise",
    ]


def test_values_on_one_side_only_are_named(study):
    ours = copy.deepcopy(study)
    del ours["softmax_l2"]["l2=0"]["val_loss"]
    ours["softmax_l2"]["l2=1"] = {"val_accuracy": 0.7}
    found = differences(ours, study)
    assert found == [
        "softmax_l2.l2=0.val_loss: missing (committed 0.31)",
        "softmax_l2.l2=1.val_accuracy: not in the committed study",
    ]


@pytest.mark.integration  # git and the command in a process of their own
def test_the_command_compares_with_a_git_revision(study, tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    details = tmp_path / "reports" / "details.json"
    details.parent.mkdir()
    details.write_text(json.dumps(study))
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@localhost", "add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "s")
    command = [sys.executable, "-m", "mnist_regression.study.compare"]

    same = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    assert "every value within tolerance of HEAD" in same.stdout

    study["softmax"]["test_accuracy"]["mean"] = 0.93
    details.write_text(json.dumps(study))
    moved = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert moved.returncode == 1
    assert moved.stdout.startswith("softmax.test_accuracy.mean: 0.93 (committed 0.92")
    assert moved.stderr.strip() == "1 value differs from HEAD beyond tolerance"

    missing = subprocess.run(
        [*command, "--rev", "nope"], cwd=tmp_path, capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert "--rev" in missing.stderr and "Traceback" not in missing.stderr
