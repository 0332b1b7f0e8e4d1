"""DVC stage ``report``: figures, metrics.json, plot data and results.md."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..common.cli import run_stage
from ..common.config import load_params, train_config
from ..common.errors import UserError
from ..common.io import save_json
from ..core.losses import LOSSES
from ..study.champion import candidates, choose_per_task
from ..study.report import build_report, training_stages


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
    stages = {stage.folder: stage.name for stage in training_stages()}
    jobs = candidates(Path(cfg.study.results_dir), list(stages), cfg.data.prepared_dir)
    picks = choose_per_task(jobs)
    # the stage's one output outside git: a fresh clone's `dvc repro` runs the
    # stage, and so registers the champions in its own store
    save_json(
        Path(cfg.study.reports_dir) / CHAMPIONS,
        {
            pick.best.task: {"job": pick.best.label, "runner_up": pick.runner_up.label}
            if pick.runner_up
            else {"job": pick.best.label}
            for pick in picks
        },
    )
    if cfg.tracking.enabled:
        register(cfg, metrics["paired"], jobs, picks, stages)


CHAMPIONS = "champions.json"


def register(cfg, paired: dict, jobs: list, picks: list, stages: dict) -> None:
    """Each task's pick (``picks``, by ``study.champion``) in the MLflow Model
    Registry, aliased ``champion`` (inside ``dvc exp run``:
    ``candidate-<experiment>``); a store that cannot be used costs a warning."""
    from ..tracking.serving import alias_for, register_champions
    from ..tracking.session import open_session
    from ..tracking.target import describe_failure, resolve_target

    target = resolve_target(cfg.tracking.uri)
    alias = alias_for(os.environ.get("DVC_EXP_NAME"))
    try:
        session = open_session(target)
        experiment = session.find_experiment(cfg.tracking.experiment)
        if experiment is None:
            return
        found = register_champions(
            session.client, experiment, picks, cfg.data.digits, alias
        )
        logged = log_paired(session.client, experiment, paired, jobs, stages)
        print(f"paired tests logged to {logged} sweeps' parent runs")
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
        if version is None:
            print(f"warning: {name} not registered: {run_name}", file=sys.stderr)
        else:
            print(f"registered {name} version {version} ({run_name}) as @{alias}")


def log_paired(client, experiment: str, paired: dict, jobs: list, stages: dict) -> int:
    """Each family of paired tests run on one training stage's jobs, as metrics
    of that stage's latest parent run whose jobs wrote the workspace's outputs:
    ``mcnemar/<task>/<first> vs <second>/{p,p_holm,only_first,only_second}``.
    ``jobs``: the workspace's ``candidates``; ``stages``: folder -> DVC stage.
    Returns the number of parent runs written."""
    from ..tracking.provenance import WEIGHTS_TAG
    from ..tracking.session import log_metrics

    written = 0
    for family in paired.values():
        folder = family["stage"]
        job = next((j for j in jobs if j.label.startswith(f"{folder}/")), None)
        if job is None:
            continue
        # any job of the stage finds its parent (the same weights may come from
        # another stage's job of the same settings: the stage's tag tells)
        runs = client.search_runs(
            [experiment],
            filter_string=f"tags.{WEIGHTS_TAG} = '{job.weights_sha256}' "
            f"and tags.`dvc.stage` = '{stages[folder]}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs or "mlflow.parentRunId" not in runs[0].data.tags:
            continue
        log_metrics(
            client,
            runs[0].data.tags["mlflow.parentRunId"],
            {
                f"mcnemar/{family['task']}/{t['first']} vs {t['second']}/{key}": t[key]
                for t in family["tests"]
                for key in ("p", "p_holm", "only_first", "only_second")
            },
        )
        written += 1
    return written


if __name__ == "__main__":
    run_stage(main, __doc__)
