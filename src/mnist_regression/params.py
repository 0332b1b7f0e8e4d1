"""Compose ``params.yaml`` from ``conf/`` exactly as ``dvc exp run`` does.

``python -m mnist_regression.params`` rewrites params.yaml and names every value it
changes; ``--check`` only compares, and exits 1 with one line naming the values
that differ and the commands that settle them. ``make run`` and the pipeline's
first stage run the check, so an edit of ``conf/`` is never silently ignored.
Inside ``dvc exp run`` the check passes: there params.yaml is conf/ plus ``-S``.
``--stamp PATH`` writes PATH when the check passes: every other stage of the
pipeline depends on it, so that no stage runs, alone or not, before the check.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

from .common.config import PARAMS_FILE, load_params, train_config, yaml_error_line
from .common.errors import ConfigError
from .common.io import atomic_write


def compose_params(root: Path, output: Path) -> None:
    """Write the composition of the repo's Hydra config (``.dvc/config``) to output."""
    from dvc.repo import Repo
    from dvc.utils.hydra import compose_and_dump

    with Repo(str(root)) as repo:
        hydra = repo.config.get("hydra", {})
    compose_and_dump(
        output,
        str(root / hydra.get("config_dir", "conf")),
        None,
        hydra.get("config_name", "config"),
        str(root / hydra.get("plugins_path", "")),
        [],
    )


def flat(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    out = {}
    for key, value in tree.items():
        out |= flat(value, f"{prefix}{key}.")
    return out


def differences(current: Path, composed: Path) -> list[tuple[str, object, object]]:
    """(key, value in params.yaml, value composed from conf/) for each difference."""
    old = flat(yaml.safe_load(current.read_text())) if current.is_file() else {}
    new = flat(yaml.safe_load(composed.read_text()))
    keys = sorted(set(old) | set(new))
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


def describe(diffs) -> str:
    shown = ", ".join(f"{k} (params.yaml {a!r}, conf/ {b!r})" for k, a, b in diffs[:4])
    more = f" and {len(diffs) - 4} more" if len(diffs) > 4 else ""
    return shown + more


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare")
    parser.add_argument(
        "--stamp", type=Path, help="with --check: a file written when it passes"
    )
    args = parser.parse_args()
    status = compose(Path.cwd(), check_only=args.check)
    if status == 0 and args.check:
        status = validate(Path.cwd() / PARAMS_FILE)
    if status == 0 and args.check and args.stamp:
        with atomic_write(args.stamp, "w") as handle:
            handle.write("params.yaml agrees with conf/\n")
    return status


def validate(path: Path) -> int:
    """Type and range checks of params.yaml for each model, as each training
    job will run them: a wrong value (a `dvc exp run -S` too) stops the pipeline
    at its first stage, before any training starts."""
    for model in ("logistic", "softmax"):
        try:
            train_config(load_params(path, [f"model.name={model}"]))
        except ConfigError as err:
            print(f"error: {path.name}: {err}", file=sys.stderr)
            return 1
    return 0


def compose(root: Path, check_only: bool) -> int:
    """Compare params.yaml with conf/'s composition (``check_only``), or rewrite
    it; 0 when done or equal, 1 with one line naming the differences."""
    target = root / PARAMS_FILE
    if check_only and os.environ.get("DVC_EXP_NAME"):
        print("inside dvc exp run: params.yaml is conf/ plus its -S values")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "params.yaml"
        try:
            compose_params(root, fresh)
        except Exception as err:  # Hydra's and DVC's wrappers of a YAML error
            marked = yaml_error_line(err)
            if marked is None:
                raise
            print(f"error: {marked}; fix the YAML there", file=sys.stderr)
            return 1
        diffs = differences(target, fresh)
        if check_only:
            if not diffs:
                print("params.yaml is up to date with conf/")
                return 0
            print(
                f"error: params.yaml differs from conf/ in {describe(diffs)}: "
                "`make restore` returns to the committed study, `make params` "
                "rewrites params.yaml from conf/; to keep params.yaml's values, "
                "write them into conf/ (or keep the experiment with "
                "`dvc exp branch EXPERIMENT BRANCH`)",
                file=sys.stderr,
            )
            return 1
        target.write_text(fresh.read_text())
    for key, old, new in diffs:
        print(f"params.yaml: {key}: {old!r} -> {new!r} (from conf/)")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
