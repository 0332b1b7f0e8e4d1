"""DVC stage ``prepare``: the splits of both tasks into ``data.prepared_dir``."""

from __future__ import annotations

from ..config import data_section, load_params, run_cli
from ..data.prepare import prepare


def main(argv: list[str]) -> None:
    params = load_params(overrides=argv)
    summary = prepare(data_section(params), seed=params.seed)
    for task, splits in summary.items():
        counts = ", ".join(f"{split} {info['count']}" for split, info in splits.items())
        print(f"{task}: {counts}")


if __name__ == "__main__":
    run_cli(main)
