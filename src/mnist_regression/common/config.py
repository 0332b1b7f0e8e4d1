"""Schema of the configuration in ``conf/``, and loading of ``params.yaml``.

Defaults live in the YAML files only; the dataclasses here give every key its type,
so that a typo or a wrong type is refused with the key's name. Range checks that a
type cannot express live in the ``check_*`` functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

PARAMS_FILE = "params.yaml"


class ValSplit(Enum):
    first = "first"
    random = "random"


class Bias(Enum):
    """How a model treats its bias (``core.objective``)."""

    free = "free"
    penalised = "penalised"
    none = "none"


class StopWhen(Enum):
    """The early-stopping rule (``core.training``)."""

    no_new_best = "no_new_best"
    rising = "rising"


class Average(Enum):
    """Which weights a mini-batch run evaluates, keeps and ends with
    (``core.training``)."""

    none = "none"  # the last step's
    epoch = "epoch"  # the mean of the epoch's steps (Polyak-Ruppert)


class Monitor(Enum):
    """What early stopping watches on the validation set (``core.training``)."""

    loss = "loss"
    objective = "objective"
    scaled_objective = "scaled_objective"


@dataclass
class DownloadConfig:
    mirror: str | None = MISSING
    urls: list[str] = MISSING
    npm_package: str | None = MISSING
    timeout: float = MISSING
    retries: int = MISSING


@dataclass
class DataConfig:
    raw_dir: str = MISSING
    prepared_dir: str = MISSING
    train_size: int = MISSING
    val_fraction: float = MISSING
    val_split: ValSplit = MISSING
    digits: list[int] = MISSING
    test_subset: int | None = MISSING
    scale: float = MISSING
    download: DownloadConfig = field(default_factory=DownloadConfig)


class ModelName(Enum):
    logistic = "logistic"
    softmax = "softmax"


@dataclass
class ModelConfig:
    name: ModelName = MISSING
    l2: float = MISSING
    bias: Bias = MISSING


@dataclass
class OptimizerConfig:
    # a rate > 0, or "auto": from the curvature L of the training data (stable_rate)
    lr: Any = MISSING
    average: Average = MISSING
    batch_size: int | None = MISSING
    anneal_k: float = MISSING
    patience: int = MISSING
    max_epochs: int = MISSING
    max_steps: int | None = MISSING
    eval_every: int = MISSING
    stop_when: StopWhen = MISSING
    restore_best: bool = MISSING
    monitor: Monitor = MISSING


AUTO_RATE = "auto"
# Why a tracking URI may not hold a password, and where it goes instead: the one
# message of every option that takes a URI.
PASSWORD = (
    "holds a password, which every local user can read in the process list and "
    "which would be printed and recorded with the runs: give it in "
    "MLFLOW_TRACKING_PASSWORD (a server) or PGPASSFILE (a database) instead"
)


def refuse_password(uri: str | None, setting: str) -> None:
    """ConfigError naming ``setting`` if ``uri`` holds a password."""
    if urlsplit(uri or "").password:
        raise ConfigError(f"{setting} {PASSWORD}")


@dataclass
class SeedModelConfig:
    """What the seed study says of one model."""

    l2: float = MISSING
    iterations: int = MISSING


@dataclass
class SeedStudyConfig:
    """The seed study's settings (conf/experiment/seed.yaml)."""

    lr: float = MISSING
    batch_size: int | None = MISSING
    anneal_k: float = MISSING
    stop_when: StopWhen = MISSING
    patience: int = MISSING
    monitor: Monitor = MISSING
    eval_every: int = MISSING
    logistic: SeedModelConfig = field(default_factory=SeedModelConfig)
    softmax: SeedModelConfig = field(default_factory=SeedModelConfig)


@dataclass
class SeedCodeModelConfig:
    """What the seed study's code ran for one model."""

    bias: Bias = MISSING
    l2: float = MISSING
    monitor: Monitor = MISSING
    iterations: int = MISSING


@dataclass
class SeedCodeConfig:
    """The seed study as its code ran (conf/experiment/seed_code.yaml, and
    seed_delivered.yaml for the delivered version)."""

    version: str = MISSING
    scale: float = MISSING
    lr: float = MISSING
    batch_size: int | None = MISSING
    stop_when: StopWhen = MISSING
    patience: int = MISSING
    restore_best: bool = MISSING
    logistic: SeedCodeModelConfig = field(default_factory=SeedCodeModelConfig)
    softmax: SeedCodeModelConfig = field(default_factory=SeedCodeModelConfig)


@dataclass
class TrackingConfig:
    enabled: bool = MISSING
    uri: str | None = MISSING
    experiment: str = MISSING
    artifacts: bool = MISSING


@dataclass
class PlainStepsConfig:
    """The optimizer settings the averaged default replaced (the l2_plain stage)."""

    lr: float = MISSING
    average: Average = MISSING


@dataclass
class StudyConfig:
    lr_grid: str = MISSING
    anneal_grid: str = MISSING
    l2_grid: str = MISSING
    seeds: str = MISSING
    sweep_seeds: str = MISSING
    seed_batches: str = MISSING
    plain: PlainStepsConfig = field(default_factory=PlainStepsConfig)
    n_jobs: int = MISSING
    results_dir: str = MISSING
    reports_dir: str = MISSING


@dataclass
class TrainConfig:
    seed: int = MISSING
    progress: bool | None = MISSING
    output_dir: str | None = MISSING
    reuse_dir: str | None = MISSING
    study: StudyConfig = field(default_factory=StudyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # set by experiment=seed: the values its settings select
    seed_study: SeedStudyConfig | None = None
    seed_code: SeedCodeConfig | None = None


def plain(value: Any) -> Any:
    """A config value as plain Python: an Enum's value, a list or dict for a node."""
    if isinstance(value, Enum):
        return value.value
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, enum_to_str=True)
    return value


def structured(schema: type, cfg: Any, key: str = "") -> DictConfig:
    """Merge ``cfg`` into ``schema``; bad keys and types become ConfigError.

    Interpolations are resolved first, on the plain values (a preset may pick a
    value by ``${model.name}``, which the schema would turn into an Enum).
    """
    try:
        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        OmegaConf.to_container(merged, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, key)) from None
    return merged


def _describe(err: OmegaConfBaseException, prefix: str) -> str:
    key = getattr(err, "full_key", None) or ""
    key = f"{prefix}.{key}" if prefix and key else (key or prefix)
    message = str(err).splitlines()[0]
    return f"config key '{key}': {message}" if key else message


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config key '{key}': {message}")


def check_data(cfg: DictConfig) -> None:
    """Range checks on a ``data`` section that the schema's types cannot express."""
    require(
        cfg.train_size >= 1, "data.train_size", f"must be >= 1, got {cfg.train_size}"
    )
    require(
        0 < cfg.val_fraction < 1,
        "data.val_fraction",
        f"must lie strictly between 0 and 1, got {cfg.val_fraction}",
    )
    digits = list(cfg.digits)
    require(
        all(0 <= d <= 9 for d in digits),
        "data.digits",
        f"digits must lie in 0-9, got {digits}",
    )
    require(
        len(digits) == 2 and digits[0] != digits[1],
        "data.digits",
        f"the binary task needs exactly two distinct digits, got {digits}",
    )
    require(
        cfg.test_subset is None or cfg.test_subset >= 1,
        "data.test_subset",
        f"must be null (whole test set) or >= 1, got {cfg.test_subset}",
    )
    require(cfg.download.timeout > 0, "data.download.timeout", "must be > 0")
    require(cfg.download.retries >= 0, "data.download.retries", "must be >= 0")
    require(
        math.isfinite(cfg.scale),
        "data.scale",
        f"must be a finite number, got {cfg.scale}",
    )
    require(
        cfg.scale > 0,
        "data.scale",
        f"must be > 0 (255: pixels in [0, 1]; 1: raw 0-255), got {cfg.scale}",
    )


def check_seed(seed: Any) -> None:
    """The run's seed: a NumPy seed, an integer >= 0."""
    whole = isinstance(seed, int) and not isinstance(seed, bool)
    require(whole and seed >= 0, "seed", f"must be >= 0 (a NumPy seed), got {seed}")


def check_training(cfg: DictConfig) -> None:
    """Range checks on the model and optimizer sections."""
    opt = cfg.optimizer
    lr = opt.lr
    number = isinstance(lr, int | float) and not isinstance(lr, bool)
    require(
        lr == AUTO_RATE or (number and lr > 0),
        "optimizer.lr",
        f"must be > 0, or {AUTO_RATE} (a stable rate from the data), got {lr}",
    )
    require(cfg.model.l2 >= 0, "model.l2", f"must be >= 0, got {cfg.model.l2}")
    for key, value in (
        ("optimizer.lr", lr if number else 1.0),
        ("optimizer.anneal_k", opt.anneal_k),
        ("model.l2", cfg.model.l2),
    ):
        require(math.isfinite(value), key, f"must be a finite number, got {value}")
    require(not urlsplit(cfg.tracking.uri or "").password, "tracking.uri", PASSWORD)
    require(
        bool(str(cfg.tracking.experiment).strip()),
        "tracking.experiment",
        "must name an MLflow experiment, got an empty name",
    )
    require(
        opt.batch_size is None or opt.batch_size >= 1,
        "optimizer.batch_size",
        f"must be null (full batch) or >= 1, got {opt.batch_size}",
    )
    require(
        opt.anneal_k >= 0, "optimizer.anneal_k", f"must be >= 0, got {opt.anneal_k}"
    )
    for key in ("patience", "max_epochs", "eval_every"):
        value = opt[key]
        require(value >= 1, f"optimizer.{key}", f"must be >= 1, got {value}")
    require(
        opt.max_steps is None or opt.max_steps >= 1,
        "optimizer.max_steps",
        f"must be null (no limit) or >= 1, got {opt.max_steps}",
    )
    check_seed(cfg.seed)
    require(
        cfg.study.n_jobs >= 1,
        "study.n_jobs",
        f"must be >= 1 (parallel jobs of a sweep), got {cfg.study.n_jobs}",
    )


def train_config(cfg: Any) -> DictConfig:
    """The whole training configuration, typed and range-checked."""
    merged = structured(TrainConfig, cfg)
    check_data(merged.data)
    check_training(merged)
    if merged.optimizer.lr != AUTO_RATE:  # a number: a float, as its schema cannot say
        merged.optimizer.lr = float(merged.optimizer.lr)
    return merged


def load_params(
    path: str | Path = PARAMS_FILE, overrides: Sequence[str] = ()
) -> DictConfig:
    """Read ``params.yaml`` and apply ``key=value`` overrides from the command line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path} not found: run from the project root (`make params` writes it)"
        )
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, ValueError, OSError) as err:
        raise ConfigError(f"{path} is unreadable ({err}): run `make params`") from None
    try:
        # struct: an override of a key that params.yaml lacks (a typo) is refused
        OmegaConf.set_struct(cfg, True)
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, "")) from None
    OmegaConf.set_struct(cfg, False)
    return cfg


def data_section(cfg: DictConfig) -> DictConfig:
    if "data" not in cfg:
        raise ConfigError("config has no 'data' section")
    data = structured(DataConfig, cfg.data, "data")
    check_data(data)
    return data


def yaml_error_line(err: BaseException) -> str | None:
    """A YAML syntax error anywhere in ``err``'s chain, as "file, line L,
    column C: problem"; None if there is none."""
    while err is not None:
        if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
            mark = err.problem_mark
            context = f" ({err.context})" if err.context else ""
            return (
                f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: "
                f"{err.problem}{context}"
            )
        err = err.__cause__ or err.__context__
    return None


def check_yaml(paths) -> None:
    """Raise ConfigError naming the file and line of the first YAML syntax error
    among ``paths``, before Hydra would report it with its stack."""
    for path in paths:
        try:
            with open(path) as handle:  # a stream: the error names the file
                yaml.safe_load(handle)
        except yaml.YAMLError as err:
            where = yaml_error_line(err) or f"{path}: {err}"
            raise ConfigError(f"{where}; fix the YAML there") from None
