"""The Hydra application: ``python -m mnist_regression.train [overrides]``.

Examples::

    python -m mnist_regression.train model=softmax optimizer.lr=0.1
    python -m mnist_regression.train -m model=logistic model.l2=0,0.001,0.01,0.1,1
    python -m mnist_regression.train sweep=l2 model=softmax
    python -m mnist_regression.train experiment=seed
    python -m mnist_regression.train --config-dir . --config-name params  # DVC

The work is in ``app``: ``app.job.run_job`` trains one configuration, and a
multirun is guarded by ``app.sweep.SweepGuard``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .app.job import entry_point, run_job
from .tracking.provenance import CONF


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


if __name__ == "__main__":
    entry_point(main)
