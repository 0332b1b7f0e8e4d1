"""Build the train, validation and test splits of both tasks from the raw IDX files.

Each task is saved as an ``.npz`` holding, per split ``s`` in train/val/test:
``x_s`` (n, 784) float32 pixels in [0, 1], ``t_s`` (n,) int64 targets and
``index_s`` (n,) int64 positions in the source file. The binary task keeps two
digits, target 1 for the first and 0 for the second; the multiclass task keeps all
ten, target = digit.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ..common.config import ConfigError, plain, require
from ..common.errors import DataError, MissingInputError
from ..common.io import save_json, save_npz
from .idx import IdxError, read_idx

TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SPLITS = ("train", "val", "test")
TASKS = ("binary", "multiclass")
# The data.* settings that decide the prepared arrays, recorded in summary.json.
SETTINGS = ("train_size", "val_fraction", "val_split", "digits", "test_subset")


# Prepared pixels are the file's bytes / PIXEL_MAX, in [0, 1].
PIXEL_MAX = 255


def pair_name(digits) -> str:
    """The binary task by its digits, the first the positive class: "2 vs 3"."""
    positive, negative = (int(d) for d in digits)
    return f"{positive} vs {negative}"


def class_labels(task: str, digits) -> list[str]:
    """How a model's classes are shown: the pair ("2 vs 3") for the binary task,
    each digit for the others."""
    if task == "binary":
        return [pair_name(digits)]
    return [str(digit) for digit in class_digits(task, digits)]


def class_digits(task: str, digits) -> list[int]:
    """The digit of each class a model predicts: for the binary task class 0 is
    the second digit of ``digits`` and class 1 the first; else the digit itself."""
    if task == "binary":
        positive, negative = (int(d) for d in digits)
        return [negative, positive]
    return list(range(10))


def load_pair(raw_dir: Path, files: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Images as (n, pixels) uint8 and labels as (n,) from one image/label pair."""
    image_path, label_path = raw_dir / files[0], raw_dir / files[1]
    images = read_idx(image_path, ndim=3)
    labels = read_idx(label_path, ndim=1)
    if len(images) != len(labels):
        raise IdxError(
            f"{image_path} holds {len(images)} images but {label_path} holds "
            f"{len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise IdxError(f"{label_path}: label {labels.max()} is not a digit")
    return images.reshape(len(images), -1), labels.astype(np.int64)


def split_indices(cfg: DictConfig, n_train_file: int, seed: int):
    """Positions in the training file of the training and validation images."""
    require(
        cfg.train_size <= n_train_file,
        "data.train_size",
        f"{cfg.train_size} exceeds the {n_train_file} images in the training file",
    )
    n_val = round(cfg.train_size * cfg.val_fraction)
    require(
        0 < n_val < cfg.train_size,
        "data.val_fraction",
        f"{cfg.val_fraction} of {cfg.train_size} images leaves an empty split",
    )
    order = np.arange(cfg.train_size)
    if cfg.val_split.name == "random":
        order = np.random.default_rng(seed).permutation(cfg.train_size)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def test_indices(cfg: DictConfig, n_test_file: int) -> np.ndarray:
    if cfg.test_subset is None:
        return np.arange(n_test_file)
    require(
        cfg.test_subset <= n_test_file,
        "data.test_subset",
        f"{cfg.test_subset} exceeds the {n_test_file} images in the test file",
    )
    return np.arange(n_test_file - cfg.test_subset, n_test_file)


def build_tasks(cfg: DictConfig, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """The arrays of both tasks, keyed by task then by ``x_train``-style names."""
    raw_dir = Path(cfg.raw_dir)
    train_x, train_y = load_pair(raw_dir, TRAIN_FILES)
    test_x, test_y = load_pair(raw_dir, TEST_FILES)
    train_idx, val_idx = split_indices(cfg, len(train_x), seed)
    sources = {
        "train": (train_x, train_y, train_idx),
        "val": (train_x, train_y, val_idx),
        "test": (test_x, test_y, test_indices(cfg, len(test_x))),
    }
    positive, negative = (int(d) for d in cfg.digits)
    tasks: dict[str, dict[str, np.ndarray]] = {task: {} for task in TASKS}
    for split, (images, labels, idx) in sources.items():
        pair = idx[np.isin(labels[idx], (positive, negative))]
        _put(tasks["multiclass"], split, images, idx, labels[idx])
        _put(tasks["binary"], split, images, pair, (labels[pair] == positive))
    for split in SPLITS:
        if len(tasks["binary"][f"t_{split}"]) == 0:
            raise ConfigError(
                f"config key 'data.digits': no image of digits {positive} or "
                f"{negative} in the {split} split"
            )
    return tasks


def _put(task: dict, split: str, images, idx, targets) -> None:
    task[f"x_{split}"] = images[idx].astype(np.float32) / np.float32(PIXEL_MAX)
    task[f"t_{split}"] = np.asarray(targets, dtype=np.int64)
    task[f"index_{split}"] = idx.astype(np.int64)


def summarize(tasks: dict[str, dict[str, np.ndarray]], cfg: DictConfig) -> dict:
    """Counts per task, split and class (class = digit, both tasks)."""
    positive, negative = (int(d) for d in cfg.digits)
    summary = {}
    for task, arrays in tasks.items():
        summary[task] = {}
        for split in SPLITS:
            targets = arrays[f"t_{split}"]
            if task == "binary":
                targets = np.where(targets == 1, positive, negative)
            digits, counts = np.unique(targets, return_counts=True)
            summary[task][split] = {
                "count": int(len(targets)),
                "classes": {
                    str(d): int(c) for d, c in zip(digits, counts, strict=True)
                },
            }
    return summary


def settings_of(cfg: DictConfig, seed: int) -> dict:
    """The settings that decide the prepared data (the seed only for a random split)."""
    settings = {key: plain(cfg[key]) for key in SETTINGS}
    if settings["val_split"] == "random":
        settings["seed"] = int(seed)
    return settings


def prepare(cfg: DictConfig, seed: int) -> dict:
    """Write ``<prepared_dir>/{binary,multiclass}.npz`` and ``summary.json``, which
    records the settings used under ``settings``."""
    tasks = build_tasks(cfg, seed)
    out = Path(cfg.prepared_dir)
    for task, arrays in tasks.items():
        save_npz(out / f"{task}.npz", arrays)
    summary = summarize(tasks, cfg)
    save_json(out / "summary.json", {**summary, "settings": settings_of(cfg, seed)})
    return summary


def check_prepared_settings(cfg: DictConfig, seed: int) -> None:
    """Refuse to train when ``data.*`` disagrees with what was prepared."""
    path = Path(cfg.prepared_dir) / "summary.json"
    fix = "run `dvc repro prepare` (or python -m mnist_regression.stages.prepare"
    if not path.is_file():
        raise MissingInputError(f"{path} not found: {fix} with the same data.* values)")
    try:
        recorded = json.loads(path.read_text())["settings"]
    except (ValueError, KeyError, TypeError):
        raise DataError(
            f"{path} does not record the settings it was made with: {fix})"
        ) from None
    wanted = settings_of(cfg, seed)
    for key, value in wanted.items():
        if recorded.get(key) != value:
            name = "seed" if key == "seed" else f"data.{key}"
            raise DataError(
                f"config key '{name}' is {value} but {cfg.prepared_dir} was prepared "
                f"with {recorded.get(key)}: {fix} {name}={value}), or train with "
                f"{name}={recorded.get(key)}"
            )


def load_task(prepared_dir: str | Path, task: str) -> dict[str, np.ndarray]:
    """The arrays of one prepared task, checked: names, shapes, finite pixels."""
    path = Path(prepared_dir) / f"{task}.npz"
    fix = "run `dvc repro prepare --force` to write it again"
    if path.exists() and not path.is_file():
        raise DataError(f"{path} is a directory, not a prepared data file: {fix}")
    if not path.is_file():
        raise MissingInputError(f"{path} not found: run `dvc repro prepare` first")
    try:
        with np.load(path) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path} is unreadable ({err}): {fix}") from None
    missing = [
        f"{kind}_{split}"
        for split in SPLITS
        for kind in ("x", "t")
        if f"{kind}_{split}" not in arrays
    ]
    if missing:
        raise DataError(f"{path} lacks the arrays {', '.join(missing)}: {fix}")
    width = arrays["x_train"].shape[-1]
    for split in SPLITS:
        x, t = arrays[f"x_{split}"], arrays[f"t_{split}"]
        if x.ndim != 2 or t.ndim != 1 or len(x) != len(t) or x.shape[1] != width:
            raise DataError(
                f"{path}: x_{split} has shape {x.shape} and t_{split} {t.shape}, "
                f"expected (n, {width}) and (n,): {fix}"
            )
        if len(t) == 0:
            raise DataError(f"{path}: the {split} split is empty: {fix}")
        if x.dtype.kind != "f":
            raise DataError(
                f"{path}: x_{split} holds {x.dtype} values, not float pixels: {fix}"
            )
        if not np.isfinite(x).all():
            raise DataError(f"{path}: x_{split} holds NaN or infinite pixels: {fix}")
        if x.min() < 0 or x.max() > 1:
            raise DataError(
                f"{path}: x_{split} has pixels outside [0, 1] "
                f"({x.min():g} to {x.max():g}): {fix}"
            )
        if t.dtype.kind not in "iu" or t.min() < 0:
            raise DataError(f"{path}: t_{split} is not a class index: {fix}")
        if task == "binary" and t.max() > 1:
            raise DataError(
                f"{path}: t_{split} holds targets other than 0 and 1 (up to "
                f"{t.max()}), labels outside the two digits of the task: {fix}"
            )
    return arrays


def scaled(arrays: dict, scale: float) -> dict:
    """The prepared pixels (value / 255) as value / ``scale``: 255 keeps them in
    [0, 1]; 1 gives the raw 0-255 values the seed study's code trained on."""
    if scale == PIXEL_MAX:
        return arrays
    factor = np.float32(PIXEL_MAX / scale)
    return {k: v * factor if k.startswith("x_") else v for k, v in arrays.items()}
