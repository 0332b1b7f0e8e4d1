"""Copy the runs of one tracking store into another, with MLflow's own client:
``python -m mnist_regression.tracking.migrate --to TARGET [--from SOURCE]``.

The move from the embedded SQLite store to a team's server: every run of the
experiment keeps its name, times, status, parameters, tags, the whole history of
every metric (step, timestamp, value), its dataset inputs, its artifacts and its
logged models (MLflow 3 models, with their artifacts, linked to the run as its
outputs); a sweep's jobs stay children of its parent run, and tags naming other
runs (a sweep's ``best_run_id``) name their copies; registered models get
versions that point at the copied models, with their aliases.

Safe to interrupt and repeat: a run or model is created with the tag
``migrating_from`` and gets ``migrated_from`` (source URI and id) only once it
is complete, status and artifacts included. The next pass skips what is complete,
deletes what an interruption left half-made and copies it again, and sets every
alias and run reference anew.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..common.config import refuse_password
from ..common.errors import UserError
from .provenance import study_experiment
from .session import log_params, metric_batches, open_session
from .target import (
    Target,
    default_target,
    describe_failure,
    same_store,
)

MIGRATED_FROM = "migrated_from"
MIGRATING = "migrating_from"  # on a copy until it is complete
PARENT = "mlflow.parentRunId"


@dataclass
class Copied:
    runs: int = 0
    skipped: int = 0
    metric_values: int = 0
    artifacts: int = 0
    models: int = 0
    versions: int = 0
    run_ids: dict[str, str] = field(default_factory=dict)  # source id -> target id
    model_ids: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"{self.runs} runs copied ({self.metric_values} metric values, "
            f"{self.artifacts} artifact files, {self.models} logged models, "
            f"{self.versions} registered model versions); {self.skipped} runs were "
            "already there"
        )


def migrate(source_uri: str, target_uri: str, experiment: str) -> Copied:
    from mlflow.tracking import MlflowClient

    from .session import EXPERIMENT_TAGS

    source, target = MlflowClient(source_uri), MlflowClient(target_uri)
    found = source.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no experiment {experiment!r} in {source_uri}")
    there = target.get_experiment_by_name(experiment)
    if there is None:
        tags = {**EXPERIMENT_TAGS, **found.tags}
        target_experiment = target.create_experiment(experiment, tags=tags)
    else:
        target_experiment = there.experiment_id
    copied = Copied()
    for run in target.search_runs([target_experiment], max_results=50_000):
        origin = run.data.tags.get(MIGRATED_FROM, "")
        if origin.startswith(f"{source_uri}#"):
            copied.run_ids[origin.split("#", 1)[1]] = run.info.run_id
        elif run.data.tags.get(MIGRATING, "").startswith(f"{source_uri}#"):
            target.delete_run(run.info.run_id)  # half-made: copied again below
    runs = source.search_runs(
        [found.experiment_id], max_results=50_000, order_by=["attributes.start_time"]
    )
    # parents before their children, whatever their start times
    runs.sort(key=lambda run: PARENT in run.data.tags)
    for run in tqdm(runs, unit="run", desc="runs", disable=None):
        if run.info.run_id in copied.run_ids:
            copied.skipped += 1
            continue
        copied.run_ids[run.info.run_id] = _copy_run(
            source, target, source_uri, run, target_experiment, copied
        )
        copied.runs += 1
    for run in runs:  # tags naming other runs (a sweep's best_run_id) follow them
        for key, value in run.data.tags.items():
            if key != PARENT and value in copied.run_ids:
                target.set_tag(
                    copied.run_ids[run.info.run_id], key, copied.run_ids[value]
                )
    _copy_models(
        source, target, source_uri, found.experiment_id, target_experiment, copied
    )
    _copy_registry(source, target, copied)
    return copied


def _copy_run(source, target, source_uri, run, experiment_id, copied) -> str:
    from mlflow.entities import RunTag

    origin = f"{source_uri}#{run.info.run_id}"
    tags = {**run.data.tags, MIGRATING: origin}
    if PARENT in tags:
        tags[PARENT] = copied.run_ids[tags[PARENT]]
    new = target.create_run(
        experiment_id,
        start_time=run.info.start_time,
        tags=tags,
        run_name=run.info.run_name,
    ).info.run_id
    log_params(target, new, run.data.params)
    values = [
        point
        for key in run.data.metrics
        for point in source.get_metric_history(run.info.run_id, key)
    ]
    for batch in metric_batches(values):
        target.log_batch(new, metrics=batch)
    copied.metric_values += len(values)
    if run.inputs and run.inputs.dataset_inputs:
        target.log_inputs(new, datasets=list(run.inputs.dataset_inputs))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(source.download_artifacts(run.info.run_id, "", tmp))
        files = [p for p in local.rglob("*") if p.is_file()]
        if files:
            target.log_artifacts(new, str(local))
            copied.artifacts += len(files)
    target.set_terminated(new, run.info.status, run.info.end_time)
    # last: a run cut short before this is deleted and copied again next time
    target.log_batch(new, tags=[RunTag(MIGRATED_FROM, origin)])
    target.delete_tag(new, MIGRATING)
    return new


def _logged_models(client, experiment_id: str):
    """Every logged model of the experiment, page after page."""
    page_token = None
    while True:
        page = client.search_logged_models([experiment_id], page_token=page_token)
        yield from page
        page_token = page.token
        if not page_token:
            return


def _copy_models(
    source, target, source_uri, experiment_id, target_experiment, copied
) -> None:
    import mlflow
    from mlflow.entities import LoggedModelOutput

    for model in list(_logged_models(target, target_experiment)):
        origin = model.tags.get(MIGRATED_FROM, "")
        if origin.startswith(f"{source_uri}#"):
            copied.model_ids[origin.split("#", 1)[1]] = model.model_id
        elif model.tags.get(MIGRATING, "").startswith(f"{source_uri}#"):
            target.delete_logged_model(model.model_id)  # half-made
    for model in list(_logged_models(source, experiment_id)):
        if model.model_id in copied.model_ids:
            continue
        if model.source_run_id not in copied.run_ids:
            continue
        run_id = copied.run_ids[model.source_run_id]
        origin = f"{source_uri}#{model.model_id}"
        new = target.create_logged_model(
            target_experiment,
            name=model.name,
            source_run_id=run_id,
            tags={**model.tags, MIGRATING: origin},
            params=model.params,
            model_type=model.model_type,
        )
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=model.artifact_location,
                dst_path=tmp,
                tracking_uri=source.tracking_uri,
            )
            target.log_model_artifacts(new.model_id, local)
        target.finalize_logged_model(new.model_id, model.status)
        target.log_outputs(run_id, [LoggedModelOutput(new.model_id, 0)])
        target.set_logged_model_tags(new.model_id, {MIGRATED_FROM: origin})  # last
        target.delete_logged_model_tag(new.model_id, MIGRATING)
        copied.model_ids[model.model_id] = new.model_id
        copied.models += 1


def _copy_registry(source, target, copied) -> None:
    """Registered models whose versions come from copied models or runs."""
    for registered in source.search_registered_models():
        versions = [
            v
            for v in source.search_model_versions(f"name = '{registered.name}'")
            if v.run_id in copied.run_ids
        ]
        if not versions:
            continue
        if not target.search_registered_models(f"name = '{registered.name}'"):
            target.create_registered_model(
                registered.name, registered.tags, registered.description
            )
        existing = {
            v.tags.get(MIGRATED_FROM): v.version
            for v in target.search_model_versions(f"name = '{registered.name}'")
        }
        new_versions = {}  # source version -> its copy's, made now or before
        for version in sorted(versions, key=lambda v: int(v.version)):
            origin = f"{registered.name}/{version.version}"
            if origin in existing:
                new_versions[version.version] = existing[origin]
                continue
            model_id = copied.model_ids.get(getattr(version, "model_id", None) or "")
            source_uri = (
                f"models:/{model_id}"
                if model_id
                else f"runs:/{copied.run_ids[version.run_id]}/model"
            )
            made = target.create_model_version(
                registered.name,
                source_uri,
                run_id=copied.run_ids[version.run_id],
                tags={**version.tags, MIGRATED_FROM: origin},
                description=version.description,
                model_id=model_id,
            )
            new_versions[version.version] = made.version
            copied.versions += 1
        for alias, version in (registered.aliases or {}).items():  # all, again
            if version in new_versions:
                target.set_registered_model_alias(
                    registered.name, alias, new_versions[version]
                )


def main(argv: list[str] | None = None) -> None:
    import argparse

    from ..common.cli import main_guard

    parser = argparse.ArgumentParser(
        prog="python -m mnist_regression.tracking.migrate",
        description="Copy an experiment's runs, metric histories, artifacts, logged "
        "and registered models from one tracking store to another (e.g. from the "
        "project's SQLite store to a team's server); safe to repeat.",
    )
    parser.add_argument("--to", required=True, help="the target's tracking URI")
    parser.add_argument(
        "--from",
        dest="source",
        help="the source's tracking URI (default: the project's SQLite store)",
    )
    parser.add_argument("--experiment", default=study_experiment())
    args = parser.parse_args(argv)

    def run() -> None:
        refuse_password(args.source, "--from")
        refuse_password(args.to, "--to")
        source = Target(args.source, "--from") if args.source else default_target()
        target = Target(args.to, "--to")
        if same_store(source, target):
            raise UserError(
                f"--from {source.uri} and --to {args.to} name the same store: there "
                "is nothing to copy; name another store with --to"
            )
        # the source first: a wrong name creates nothing in the target
        if open_session(source).find_experiment(args.experiment) is None:
            raise source.fail(
                f"no experiment {args.experiment!r}",
                "name it with --experiment (`mlflow experiments search` lists them)",
            )
        there = open_session(target).client.get_experiment_by_name(args.experiment)
        if there is not None and there.lifecycle_stage == "deleted":
            raise target.fail(
                f"the experiment {args.experiment!r} is deleted there",
                f"restore it with `MLFLOW_TRACKING_URI={target.uri} mlflow "
                f"experiments restore --experiment-id {there.experiment_id}`, or "
                "copy into another with --experiment",
            )
        print(f"copying {args.experiment!r} from {source.uri} to {target.uri}")
        try:
            copied = migrate(source.uri, target.uri, args.experiment)
        except LookupError as err:
            raise source.fail(str(err), "name it with --experiment") from None
        except Exception as err:
            raise target.fail(
                f"copying stopped ({describe_failure(err)})",
                "run the same command again: runs already copied are skipped",
            ) from None
        print(copied)

    main_guard(run)


if __name__ == "__main__":
    main()
