"""DVC stage ``prepare``: the splits of both tasks into ``data.prepared_dir``."""

from __future__ import annotations

from pathlib import Path

from ..common.cli import run_stage
from ..common.config import check_seed, data_section, load_params
from ..common.errors import ConfigError
from ..data.download import verify_raw
from ..data.prepare import prepare


def main(argv: list[str]) -> None:
    params = load_params(overrides=argv)
    data = data_section(params)
    check_seed(params.seed)
    out = Path(data.prepared_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"config key 'data.prepared_dir': cannot create {out} "
            f"({err.strerror or err}); point it at a writable folder"
        ) from None
    verify_raw(Path(data.raw_dir))
    summary = prepare(data, seed=params.seed)
    for task, splits in summary.items():
        counts = ", ".join(f"{split} {info['count']}" for split, info in splits.items())
        print(f"{task}: {counts}")


if __name__ == "__main__":
    run_stage(main, __doc__)
