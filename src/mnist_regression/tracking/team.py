"""Let teammates write to the study's experiment on the team server.

On MLflow's basic-auth a user reads every experiment (the server's default
permission, READ) and changes only those it created or was granted: a second
user's runs are refused (403) in an experiment the first one created. An admin
grants the team once, with the admin's credentials in the environment::

    MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... \\
    python -m mnist_regression.tracking.team --tracking-uri http://HOST:5000 alice bob

This creates the experiment if it does not exist yet, a role (MLflow's group)
named ``<experiment>-editors`` with EDIT on it, and puts each named user in the
role. Run again with other names, it adds them; nothing else changes.
``--revoke`` takes the named users out of the role.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import UserError
from .provenance import study_experiment

WORKSPACE = "default"  # MLflow's workspace when workspaces are off
PERMISSION = "EDIT"


def role_name(experiment: str) -> str:
    return f"{experiment}-editors"


@dataclass
class Team:
    experiment_id: str
    role: str
    members: list[str]


def grant(uri: str, experiment: str, users: list[str], revoke: bool = False) -> Team:
    """Put ``users`` in the experiment's editors role (out of it, ``revoke``),
    creating the experiment, the role and its EDIT permission where missing."""
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    admin = get_app_client("basic-auth", tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id if found else client.create_experiment(experiment)
    )
    name = role_name(experiment)
    role = next((r for r in admin.list_roles(WORKSPACE) if r.name == name), None)
    if role is None:
        role = admin.create_role(
            WORKSPACE, name, f"may write runs to the experiment {experiment!r}"
        )
    granted = admin.list_role_permissions(role.id)
    if not any(
        p.resource_type == "experiment" and p.resource_pattern == experiment_id
        for p in granted
    ):
        admin.add_role_permission(role.id, "experiment", experiment_id, PERMISSION)
    members = {a.username for a in admin.list_role_users(role.id)}
    for user in users:
        admin.get_user(user)  # an unknown name fails here, naming it
        if revoke and user in members:
            admin.unassign_role(user, role.id)
            members.discard(user)
        elif not revoke and user not in members:
            admin.assign_role(user, role.id)
            members.add(user)
    return Team(experiment_id, name, sorted(members))


def main(argv: list[str] | None = None) -> None:
    import argparse

    from ..common.cli import main_guard
    from .target import describe_failure

    parser = argparse.ArgumentParser(
        prog="python -m mnist_regression.tracking.team",
        description="Let users write runs to the study's experiment on a team "
        "server (an admin's credentials in MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD).",
    )
    parser.add_argument("users", nargs="+", help="the users to add (or revoke)")
    parser.add_argument("--tracking-uri", required=True, help="the server's URL")
    parser.add_argument("--experiment", default=study_experiment())
    parser.add_argument("--revoke", action="store_true", help="take the users out")
    args = parser.parse_args(argv)

    def run() -> None:
        try:
            team = grant(args.tracking_uri, args.experiment, args.users, args.revoke)
        except Exception as err:
            raise UserError(
                f"cannot change the team of {args.experiment!r} on "
                f"{args.tracking_uri} ({describe_failure(err)}); run it as an admin "
                "(MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD) with users "
                "the server knows"
            ) from None
        members = ", ".join(team.members) or "nobody"
        print(
            f"experiment {args.experiment!r} (id {team.experiment_id}): role "
            f"{team.role!r} ({PERMISSION}): {members}"
        )

    main_guard(run)


if __name__ == "__main__":
    main()
