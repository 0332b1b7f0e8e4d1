import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from mnist_regression.common.config import ConfigError, data_section
from mnist_regression.common.errors import DataError
from mnist_regression.common.io import save_npz
from mnist_regression.data.idx import read_idx
from mnist_regression.data.prepare import (
    build_tasks,
    check_prepared_settings,
    load_task,
    prepare,
)


def raw_arrays(cfg, prefix):
    images = read_idx(f"{cfg.raw_dir}/{prefix}-images-idx3-ubyte")
    labels = read_idx(f"{cfg.raw_dir}/{prefix}-labels-idx1-ubyte")
    return images.reshape(len(images), -1), labels


def test_first_split_takes_the_first_fraction_for_validation(data_cfg):
    tasks = build_tasks(data_cfg, seed=0)
    multi = tasks["multiclass"]
    np.testing.assert_array_equal(multi["index_val"], np.arange(10))
    np.testing.assert_array_equal(multi["index_train"], np.arange(10, 50))
    np.testing.assert_array_equal(multi["index_test"], np.arange(40))


def test_pixels_are_scaled_float32_copies_of_the_file(data_cfg):
    multi = build_tasks(data_cfg, seed=0)["multiclass"]
    images, labels = raw_arrays(data_cfg, "train")
    assert multi["x_train"].dtype == np.float32
    assert multi["x_train"].shape == (40, 16)
    np.testing.assert_allclose(multi["x_train"], images[10:50] / 255.0, rtol=1e-6)
    assert multi["x_train"].min() >= 0.0 and multi["x_train"].max() <= 1.0
    np.testing.assert_array_equal(multi["t_train"], labels[10:50])


def test_binary_task_keeps_two_digits_first_is_positive(data_cfg):
    data_cfg.digits = [7, 3]
    binary = build_tasks(data_cfg, seed=0)["binary"]
    _, labels = raw_arrays(data_cfg, "train")
    _, test_labels = raw_arrays(data_cfg, "t10k")
    for split, source in (("train", labels), ("val", labels), ("test", test_labels)):
        digits = source[binary[f"index_{split}"]]
        assert set(digits) == {3, 7}
        np.testing.assert_array_equal(binary[f"t_{split}"], digits == 7)
    assert set(binary["index_val"]) <= set(range(10))


def test_test_subset_keeps_the_last_images(data_cfg):
    data_cfg.test_subset = 15
    multi = build_tasks(data_cfg, seed=0)["multiclass"]
    np.testing.assert_array_equal(multi["index_test"], np.arange(25, 40))


def test_random_split_is_seeded(data_cfg):
    data_cfg.val_split = "random"
    first = build_tasks(data_cfg, seed=1)["multiclass"]
    again = build_tasks(data_cfg, seed=1)["multiclass"]
    other = build_tasks(data_cfg, seed=2)["multiclass"]
    np.testing.assert_array_equal(first["index_val"], again["index_val"])
    assert not np.array_equal(first["index_val"], other["index_val"])
    assert len(first["index_val"]) == 10
    assert set(first["index_val"]) | set(first["index_train"]) == set(range(50))
    assert not np.array_equal(first["index_val"], np.arange(10))


def test_outputs_are_byte_identical_across_runs(data_cfg, tmp_path):
    prepare(data_cfg, seed=0)
    out = tmp_path / "prepared"
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    for path in out.iterdir():
        path.unlink()
    prepare(data_cfg, seed=0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert sorted(first) == ["binary.npz", "multiclass.npz", "summary.json"]


def test_summary_counts_classes_per_split(data_cfg, tmp_path):
    summary = prepare(data_cfg, seed=0)
    on_disk = json.loads((tmp_path / "prepared" / "summary.json").read_text())
    assert on_disk.pop("settings")["train_size"] == 50
    assert on_disk == summary
    assert summary["multiclass"]["val"] == {
        "count": 10,
        "classes": {str(d): 1 for d in range(10)},
    }
    assert summary["binary"]["train"] == {"count": 8, "classes": {"2": 4, "3": 4}}
    binary = load_task(tmp_path / "prepared", "binary")
    assert len(binary["t_train"]) == 8


BAD_VALUES = [
    ("val_fraction", 0.0, "data.val_fraction"),
    ("val_fraction", 1.0, "data.val_fraction"),
    ("digits", [2, 10], "data.digits"),
    ("digits", [4, 4], "data.digits"),
    ("digits", [4], "data.digits"),
    ("train_size", 0, "data.train_size"),
    ("test_subset", 0, "data.test_subset"),
    ("val_split", "sideways", "data.val_split"),
    ("train_size", "many", "data.train_size"),
]


@pytest.mark.parametrize(("key", "value", "named"), BAD_VALUES)
def test_invalid_values_name_their_key(data_cfg, key, value, named):
    raw = OmegaConf.to_container(data_cfg)
    raw[key] = value
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        data_section(OmegaConf.create({"data": raw}))


def test_unknown_key_is_refused(data_cfg):
    raw = OmegaConf.to_container(data_cfg)
    raw["trian_size"] = 5
    with pytest.raises(ConfigError, match="trian_size"):
        data_section(OmegaConf.create({"data": raw}))


def test_sizes_larger_than_the_files_are_refused(data_cfg):
    data_cfg.train_size = 101
    with pytest.raises(ConfigError, match="data.train_size.*100 images"):
        build_tasks(data_cfg, seed=0)
    data_cfg.train_size = 50
    data_cfg.test_subset = 41
    with pytest.raises(ConfigError, match="data.test_subset"):
        build_tasks(data_cfg, seed=0)


def test_training_refuses_data_settings_that_differ_from_the_prepared(data_cfg):
    prepare(data_cfg, seed=0)
    check_prepared_settings(data_cfg, seed=3)  # the seed matters only when random
    data_cfg.digits = [4, 9]
    with pytest.raises(DataError, match=r"'data.digits' is \[4, 9\] but .* \[2, 3\]"):
        check_prepared_settings(data_cfg, seed=0)
    data_cfg.digits = [2, 3]
    data_cfg.val_split = "random"
    with pytest.raises(DataError, match="data.val_split"):
        check_prepared_settings(data_cfg, seed=0)


def _damage_garbage(path):
    path.write_bytes(b"not a zip file at all")


def _damage_truncate(path):
    path.write_bytes(path.read_bytes()[:300])


def _damage_nan(path):
    arrays = dict(np.load(path))
    arrays["x_val"][0, 0] = np.nan
    save_npz(path, arrays)


def _damage_shape(path):
    arrays = dict(np.load(path))
    arrays["x_test"] = arrays["x_test"][:, :5]
    save_npz(path, arrays)


def _damage_missing(path):
    arrays = dict(np.load(path))
    del arrays["t_train"]
    save_npz(path, arrays)


def _damage_strings(path):
    arrays = dict(np.load(path))
    arrays["x_train"] = arrays["x_train"].astype(str)
    save_npz(path, arrays)


def _damage_labels(path):
    arrays = dict(np.load(path))
    arrays["t_val"][0] = 7  # a digit outside the task's two
    save_npz(path, arrays)


def _damage_directory(path):
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(
    ("damage", "message", "task"),
    [
        (_damage_garbage, "unreadable", "multiclass"),
        (_damage_truncate, "unreadable", "multiclass"),
        (_damage_nan, "x_val holds NaN", "multiclass"),
        (_damage_shape, "x_test has shape", "multiclass"),
        (_damage_missing, "lacks the arrays t_train", "multiclass"),
        (_damage_strings, "x_train holds <U", "multiclass"),
        (_damage_labels, "t_val holds targets other than 0 and 1", "binary"),
        (_damage_directory, "is a directory", "binary"),
    ],
)
def test_a_damaged_prepared_file_is_named_with_the_fix(
    data_cfg, tmp_path, damage, message, task
):
    prepare(data_cfg, seed=0)
    path = tmp_path / "prepared" / f"{task}.npz"
    damage(path)
    with pytest.raises(DataError, match=message) as err:
        load_task(tmp_path / "prepared", task)
    assert str(path) in str(err.value) and "dvc repro prepare" in str(err.value)
