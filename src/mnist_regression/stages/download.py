"""DVC stage ``download``: the four MNIST IDX files into ``data.raw_dir``.

Usage: ``python -m mnist_regression.stages.download [key=value ...]``; overrides
such as ``data.download.mirror=/path/to/mnist`` apply on top of params.yaml.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..common.cli import run_stage
from ..common.config import data_section, load_params
from ..data.download import build_sources, fetch_all


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = data_section(load_params(overrides=argv))
    raw_dir = Path(data.raw_dir)
    sources = build_sources(data.download, progress=sys.stderr.isatty())
    for name, source in fetch_all(raw_dir, sources).items():
        status = f"fetched from {source}" if source else "present and verified"
        print(f"{raw_dir / name}: {status}")


if __name__ == "__main__":
    run_stage(main, __doc__)
