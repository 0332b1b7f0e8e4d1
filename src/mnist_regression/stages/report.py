"""DVC stage ``report``: figures, metrics.json, plot data and results.md."""

from __future__ import annotations

import sys

from ..common.cli import run_stage
from ..common.config import load_params, train_config
from ..common.errors import UserError
from ..core.losses import LOSSES
from ..study.report import build_report


def main(argv: list[str]) -> None:
    cfg = train_config(load_params(overrides=argv))
    metrics = build_report(cfg)
    for model in LOSSES:
        test = metrics[model]["test_accuracy"]
        print(
            f"{model}: test accuracy {test['mean']:.4f} ± {test['sd']:.4f} "
            f"over {metrics[model]['seeds']} seeds"
        )
    print(f"wrote {cfg.study.reports_dir}/results.md")
    if cfg.tracking.enabled:
        register(cfg)


def register(cfg) -> None:
    """The study's best model of each task in the MLflow Model Registry, aliased
    ``champion``; a store that cannot be used costs only a warning."""
    from ..study.report import training_stages
    from ..tracking.serving import ALIAS, register_champions
    from ..tracking.session import open_session
    from ..tracking.target import describe_failure, resolve_target

    target = resolve_target(cfg.tracking.uri)
    try:
        session = open_session(target)
        experiment = session.find_experiment(cfg.tracking.experiment)
        if experiment is None:
            return
        stages = [stage.name for stage in training_stages()]
        found = register_champions(session.client, experiment, stages, cfg.data.digits)
    except UserError as err:
        print(f"warning: models not registered: {err}", file=sys.stderr)
        return
    except Exception as err:
        print(
            f"warning: models not registered in {target.uri}: {describe_failure(err)}",
            file=sys.stderr,
        )
        return
    for name, (version, run_name) in found.items():
        print(f"registered {name} version {version} ({run_name}) as @{ALIAS}")


if __name__ == "__main__":
    run_stage(main, __doc__)
