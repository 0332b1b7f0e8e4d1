"""Compare a recomputed study with a committed one, within stated tolerances.

On the machine that committed ``dvc.lock`` (same processor, library builds and
BLAS thread count) the study is bit-identical. Elsewhere OpenBLAS and NumPy pick
other kernels and float32 sums round differently, so numbers move in their last
digits. This compares ``reports/details.json`` in the workspace with the one of a
git revision:

- accuracies: within one image of the set they were measured on;
- losses and weight lengths: within ``RELATIVE`` (relative);
- counts (epochs run, best epoch, images): exactly.

Command line::

    python -m mnist_regression.study.compare [--rev HEAD] [--file reports/details.json]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..common.errors import MissingInputError
from ..core.losses import LOSSES
from .original import SET_SIZE

RELATIVE = 1e-5
DETAILS = Path("reports/details.json")
EXACT = ("epochs_run", "best_epoch", "seeds")  # and every count of images


def leaves(tree: Mapping, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from leaves(value, (*path, str(key)))
        else:
            yield (*path, str(key)), value


def set_sizes(details: Mapping) -> dict[str, dict[str, int]]:
    """Per task, the size of each set, from the rows that record it."""
    sizes = {}
    for task in LOSSES:
        row = details[task]
        sizes[task] = {key: int(row[size]) for key, size in SET_SIZE.items()}
    return sizes


def task_of(path: tuple) -> str:
    return "softmax" if any("softmax" in part for part in path) else "logistic"


def accuracy_key(path: tuple) -> str | None:
    """The kind of accuracy at ``path`` (val, test or test on the last images)."""
    for part in reversed(path):
        if part in SET_SIZE:
            return part
    return None


def differences(ours: Mapping, committed: Mapping) -> list[str]:
    """Every value beyond its tolerance, and every value present on one side only."""
    sizes = set_sizes(committed)
    found = []
    mine = dict(leaves(ours))
    for path, expected in leaves(committed):
        name = ".".join(path)
        if path not in mine:
            found.append(f"{name}: missing (committed {expected})")
            continue
        value = mine.pop(path)
        if not isinstance(expected, int | float) or isinstance(expected, bool):
            if value != expected:
                found.append(f"{name}: {value} (committed {expected})")
            continue
        kind = accuracy_key(path)
        if path[-1] in EXACT or path[-1].endswith("_images"):
            tolerance, unit = 0.0, ""
        elif kind is not None:
            n = sizes[task_of(path)][kind]
            tolerance, unit = 1.0 / n + 1e-12, f" (one image of {n:,})"
        else:
            tolerance, unit = RELATIVE * abs(expected), f" ({RELATIVE:g} relative)"
        if not math.isclose(value, expected, rel_tol=0.0, abs_tol=tolerance):
            found.append(
                f"{name}: {value} (committed {expected}; tolerance {tolerance:.3g}"
                f"{unit})"
            )
    found += [f"{'.'.join(path)}: not in the committed study" for path in mine]
    return found


def committed(rev: str, path: Path) -> dict:
    result = subprocess.run(
        ["git", "show", f"{rev}:{path.as_posix()}"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise MissingInputError(
            f"{path} at {rev}: {result.stderr.strip()}; name a revision that "
            "holds the study with --rev"
        )
    return json.loads(result.stdout)


def main(argv: list[str] | None = None) -> None:
    from ..common.cli import main_guard

    parser = argparse.ArgumentParser(
        prog="python -m mnist_regression.study.compare",
        description="Compare the recomputed study (reports/details.json) with a "
        "committed one: accuracies to one image, losses to "
        f"{RELATIVE:g} relative, counts exactly.",
    )
    parser.add_argument("--rev", default="HEAD", help="git revision (default HEAD)")
    parser.add_argument("--file", type=Path, default=DETAILS)
    args = parser.parse_args(argv)

    def run() -> None:
        if not args.file.is_file():
            raise MissingInputError(f"{args.file}: not found; run `dvc repro` first")
        ours = json.loads(args.file.read_text())
        found = differences(ours, committed(args.rev, args.file))
        for line in found:
            print(line)
        if found:
            n = len(found)
            many = f"{n} values differ" if n > 1 else "1 value differs"
            raise SystemExit(f"{many} from {args.rev} beyond tolerance")
        print(f"{args.file}: every value within tolerance of {args.rev}")

    main_guard(run)


if __name__ == "__main__":
    main()
