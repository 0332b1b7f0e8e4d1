"""What tells runs apart and traces them: names, source and DVC tags, the dataset.

- ``run_name``: the model, then every setting that differs from the defaults in
  ``conf/``, wherever it was set (command line, preset, ``dvc exp run -S``):
  ``softmax l2=0.01 lr=0.1``.
- ``source_tags``: MLflow's own ``mlflow.source.*`` tags, which fill the UI's
  Source and Version columns, plus ``git_dirty``; inside ``dvc exp run``, the DVC
  experiment's name and baseline revision.
- ``dataset``: the prepared data as an MLflow dataset (name, SHA-256 digest,
  source, schema), which fills the UI's Dataset column.
- ``WEIGHTS_TAG``: on a finished run, the SHA-256 of the ``weights.npz`` it wrote,
  which finds the run of any job folder in the workspace; ``REUSED_TAG``, on a
  run that copies a job trained before (``app.reuse``), the run that trained it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..common.config import plain

# The project's own tree: its conf/ holds the defaults, its git the commit (inside
# DVC, $DVC_ROOT is the workspace being run instead).
CONF = Path(__file__).resolve().parents[3] / "conf"
ENTRY_POINT = "mnist_regression.train"


def study_experiment() -> str:
    """The experiment the study's runs go to (``tracking.experiment`` in conf/)."""
    return str(OmegaConf.load(CONF / "tracking" / "mlflow.yaml").experiment)


WEIGHTS_TAG = "weights_sha256"
REUSED_TAG = "reused_from"
# A run's name shows every setting it trains with (the leaves of these sections,
# and the seed) that differs from conf/: by its last name, or its short one here.
NAMED_SECTIONS = ("model", "optimizer", "data")
SHORT = {
    "optimizer.batch_size": "batch",
    "optimizer.max_steps": "steps",
    "optimizer.stop_when": "stop",
    "optimizer.restore_best": "restore",
}
# Where the data comes from and goes to: not a setting of the run.
UNNAMED = ("model.name", "data.raw_dir", "data.prepared_dir", "data.download")


def named_settings(cfg: DictConfig) -> list[str]:
    """The keys a run name may show, in the config's order."""
    keys = [
        f"{section}.{key}"
        for section in NAMED_SECTIONS
        for key in OmegaConf.to_container(cfg[section], resolve=True)
    ]
    return [k for k in keys if not k.startswith(UNNAMED)] + ["seed"]


def conf_defaults(kind: str) -> DictConfig:
    """The defaults of conf/ for a model, composed by Hydra (inside the app, by its
    own initialised Hydra; elsewhere from conf/)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"model={kind}"]
    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=overrides)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def run_name(cfg: DictConfig) -> str:
    """``<model> key=value ...`` for every named setting that differs from conf/."""
    kind = cfg.model.name.value
    defaults = conf_defaults(kind)
    parts = [kind]
    steps = cfg.optimizer.max_steps
    for key in named_settings(cfg):
        short = SHORT.get(key, key.rsplit(".", 1)[-1])
        value = plain(OmegaConf.select(cfg, key))
        default = plain(OmegaConf.select(defaults, key))
        if key == "optimizer.max_epochs" and steps is not None and value >= steps:
            continue  # every epoch takes a step at least: max_steps ends the run
        if value != default and not _same_number(value, default):
            shown = "full" if key == "optimizer.batch_size" and value is None else None
            parts.append(f"{short}={shown or _show(value)}")
    return " ".join(parts)


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and float(a) == float(b)
    )


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=os.environ.get("DVC_ROOT") or CONF.parent,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def source_tags() -> dict[str, str]:
    """MLflow's source tags and, inside ``dvc exp run``, the DVC experiment."""
    tags = {"mlflow.source.name": ENTRY_POINT, "mlflow.source.type": "LOCAL"}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        branch = _git("rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags["mlflow.source.git.branch"] = branch
        status = _git("status", "--porcelain", "--untracked-files=no")
        tags["git_dirty"] = "true" if status else "false"
    for variable, tag in (
        ("DVC_EXP_NAME", "dvc.experiment"),
        ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev"),
        ("DVC_STAGE", "dvc.stage"),
    ):
        if os.environ.get(variable):
            tags[tag] = os.environ[variable]
    return tags


def dataset(path: Path, digest: str, arrays: Mapping[str, np.ndarray]) -> dict:
    """The prepared data of a task as the fields of an MLflow dataset."""
    schema = {
        "mlflow_tensorspec": {
            "features": json.dumps(
                [
                    {
                        "name": name,
                        "type": "tensor",
                        "tensor-spec": {
                            "dtype": str(array.dtype),
                            "shape": [-1, *array.shape[1:]],
                        },
                    }
                    for name, array in arrays.items()
                    if name.startswith(("x_", "t_"))
                ]
            ),
            "targets": None,
        }
    }
    counts = {name: int(len(a)) for name, a in arrays.items() if name.startswith("t_")}
    return {
        "name": f"mnist-{path.stem}",
        "digest": digest[:36],
        "source_type": "local",
        "source": json.dumps({"uri": str(path.resolve())}),
        "schema": json.dumps(schema),
        "profile": json.dumps(counts),
    }


def training_tags(kind: str, task: str, digest: str, extra: Mapping[str, str]):
    """The tags a training run starts with (``extra``: the app's own)."""
    return {
        "model": kind,
        "task": task,
        "data_sha256": digest,
        **source_tags(),
        **extra,
    }


def sweep_name(grid: Mapping[str, str]) -> str:
    """A parent run's name, one scheme for every sweep: its DVC stage (or
    ``sweep``), inside ``dvc exp run`` the experiment (so that two experiments'
    sweeps of one stage never share a name), then what varies across its jobs:
    ``train@models (pudgy-clog): model.name=logistic,softmax seed=0,1``. A key
    with one value (a stage's fixed model) is a param of the parent, not named."""
    label = os.environ.get("DVC_STAGE") or "sweep"
    if os.environ.get("DVC_EXP_NAME"):
        label += f" ({os.environ['DVC_EXP_NAME']})"
    varies = {k: v for k, v in grid.items() if "," in str(v)} or grid
    return f"{label}: " + " ".join(f"{k}={v}" for k, v in varies.items())
