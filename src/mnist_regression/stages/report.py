"""DVC stage ``report``: figures, metrics.json, plot data and results.md."""

from __future__ import annotations

from ..cli import run_stage
from ..config import load_params, train_config
from ..report import build_report


def main(argv: list[str]) -> None:
    cfg = train_config(load_params(overrides=argv))
    metrics = build_report(cfg)
    for model in ("logistic", "softmax"):
        print(f"{model}: test accuracy {metrics[model]['test_accuracy']:.4f}")
    print(f"wrote {cfg.study.reports_dir}/results.md")


if __name__ == "__main__":
    run_stage(main, __doc__)
