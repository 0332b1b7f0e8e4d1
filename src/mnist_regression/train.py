"""The Hydra application: ``python -m mnist_regression.train [overrides]``.

Examples::

    python -m mnist_regression.train model=softmax optimizer.lr=0.1
    python -m mnist_regression.train -m model=logistic model.l2=0,0.001,0.01,0.1,1
    python -m mnist_regression.train sweep=l2 model=softmax
    python -m mnist_regression.train experiment=seed
    python -m mnist_regression.train --config-dir . --config-name params  # DVC
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import train_config
from .errors import UserError
from .run import run_training, save_results
from .tracking import raise_on_sigterm
from .training import DivergenceError


def output_dir(cfg: DictConfig, hydra_cfg, multirun: bool) -> Path:
    """``output_dir`` (one numbered folder per multirun job), else Hydra's own."""
    if cfg.output_dir is None:
        return Path(hydra_cfg.runtime.output_dir)
    directory = Path(cfg.output_dir)
    return directory / str(hydra_cfg.job.num) if multirun else directory


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    raise_on_sigterm()
    overrides = list(hydra_cfg.overrides.task)
    tags = {"hydra_overrides": " ".join(overrides)}
    if multirun:
        tags |= {"sweep": hydra_cfg.sweep.dir, "sweep_job": str(hydra_cfg.job.num)}
    if os.environ.get("DVC_STAGE"):
        tags["dvc_stage"] = os.environ["DVC_STAGE"]
    try:
        cfg = train_config(cfg)
        if cfg.progress is None and multirun:
            cfg.progress = False
        label = " ".join(o for o in overrides if not o.startswith("output_dir="))
        run_name = " ".join([cfg.model.name.value, label]).strip()
        result = run_training(cfg, run_name, tags)
        save_results(result, output_dir(cfg, hydra_cfg, multirun), label)
    except DivergenceError as err:
        print(f"error: {err}", file=sys.stderr)
        if multirun:
            return None  # recorded as a FAILED run; the rest of the sweep goes on
        sys.exit(1)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    final = result.final
    print(
        f"{run_name}: best epoch {final['best_epoch']} of {final['epochs_run']}, "
        f"val accuracy {final['final_val_accuracy']:.4f}, "
        f"test accuracy {final['final_test_accuracy']:.4f}"
        + (f", MLflow run {result.run_id}" if result.run_id else "")
    )
    return final["final_val_loss"]


if __name__ == "__main__":
    main()
