"""Where our trainer's time goes: ``python -m benchmarks.profile --batch 512``.

Trains softmax regression for a few epochs under pyinstrument and prints the call
tree; ``--html FILE`` also writes pyinstrument's interactive view. Run after
``dvc repro prepare``.
"""

from __future__ import annotations

import argparse

import numpy as np
from pyinstrument import Profiler

from mnist_regression.config import load_params, train_config
from mnist_regression.data.prepare import load_task
from mnist_regression.models import LinearModel
from mnist_regression.training import Dataset, Schedule, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="128", help="a batch size, or 'full'")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--no-eval", action="store_true", help="evaluate only at the start and end"
    )
    parser.add_argument("--html", help="also write pyinstrument's HTML view here")
    args = parser.parse_args()
    cfg = train_config(load_params())
    data = Dataset.from_arrays(load_task(cfg.data.prepared_dir, "multiclass"))
    batch = None if args.batch == "full" else int(args.batch)
    every = args.epochs if args.no_eval else 1
    schedule = Schedule(cfg.optimizer.lr, batch, 0.0, args.epochs, 10**6, every)
    model = LinearModel.zeros("softmax", data.x["train"].shape[1], data.n_classes)
    profiler = Profiler(interval=0.0005)
    with profiler:
        train(model, data, schedule, np.random.default_rng(0))
    print(profiler.output_text(unicode=True, show_all=False))
    if args.html:
        with open(args.html, "w") as handle:
            handle.write(profiler.output_html())


if __name__ == "__main__":
    main()
