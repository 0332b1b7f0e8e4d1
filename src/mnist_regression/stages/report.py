"""DVC stage ``report``: figures, metrics.json, plot data and results.md."""

from __future__ import annotations

import sys

from ..cli import run_stage
from ..config import load_params, train_config
from ..errors import UserError
from ..report import build_report


def main(argv: list[str]) -> None:
    cfg = train_config(load_params(overrides=argv))
    metrics = build_report(cfg)
    for model in ("logistic", "softmax"):
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
    from mlflow.tracking import MlflowClient

    from ..report import STAGES
    from ..serving import ALIAS, register_champions
    from ..store import describe_failure, prepare_target, resolve_target

    target = resolve_target(cfg.tracking.uri)
    try:
        prepare_target(target)
        client = MlflowClient(target.uri)
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        if experiment is None:
            return
        found = register_champions(client, experiment.experiment_id, list(STAGES))
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
