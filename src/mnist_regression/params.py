"""Compose ``params.yaml`` from ``conf/`` exactly as ``dvc exp run`` does.

``python -m mnist_regression.params`` rewrites params.yaml; ``--check`` only reports
whether it is out of date (exit 1 if so). Plain ``dvc repro`` never recomposes it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare")
    args = parser.parse_args()
    root = Path.cwd()
    target = root / "params.yaml"
    if not args.check:
        compose_params(root, target)
        print(f"wrote {target}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "params.yaml"
        compose_params(root, fresh)
        if target.is_file() and fresh.read_text() == target.read_text():
            print("params.yaml is up to date with conf/")
            return 0
    print("params.yaml differs from conf/: run `make params`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
