"""Where our trainer's time goes: ``python -m benchmarks.profile --batch 512``.

Trains softmax regression for a few epochs under pyinstrument and prints the call
tree; ``--html FILE`` also writes pyinstrument's interactive view. Run after
``dvc repro prepare``.
"""

from __future__ import annotations

import argparse

import numpy as np
from pyinstrument import Profiler

from mnist_regression.common.config import load_params, train_config
from mnist_regression.core.models import LinearModel
from mnist_regression.core.training import Schedule, train

from .trainers import dataset


def profile(cfg, batch: int | None, epochs: int, evaluate: bool) -> Profiler:
    """pyinstrument's profile of ``epochs`` epochs of softmax regression."""
    data = dataset(cfg.data.prepared_dir, "softmax")
    every = 1 if evaluate else epochs
    schedule = Schedule(
        cfg.optimizer.lr,
        batch,
        0.0,
        epochs,
        10**6,
        every,
        average=cfg.optimizer.average.value,
    )
    model = LinearModel.zeros("softmax", data.x["train"].shape[1], data.n_classes)
    profiler = Profiler(interval=0.0005)
    with profiler:
        train(model, data, schedule, np.random.default_rng(0))
    return profiler


def call_tree(profiler: Profiler) -> str:
    """The call tree without pyinstrument's banner."""
    text = profiler.output_text(unicode=True, show_all=False, color=False)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line[:1].isdigit())
    return "\n".join(lines[start:]).strip("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="128", help="a batch size, or 'full'")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--no-eval", action="store_true", help="evaluate only at the start and end"
    )
    parser.add_argument("--html", help="also write pyinstrument's HTML view here")
    args = parser.parse_args()
    batch = None if args.batch == "full" else int(args.batch)
    cfg = train_config(load_params())
    profiler = profile(cfg, batch, args.epochs, not args.no_eval)
    print(call_tree(profiler))
    if args.html:
        with open(args.html, "w") as handle:
            handle.write(profiler.output_html())


if __name__ == "__main__":
    main()
