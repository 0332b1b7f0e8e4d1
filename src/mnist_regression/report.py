"""The ``report`` stage: figures, DVC metrics and plot data, and results.md.

Every number in results.md is read from the training stages' outputs; only the
seed study's own published figures are constants, in ``SEED_STUDY``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from . import figures, losses
from .data.prepare import load_task
from .errors import DataError
from .io import atomic_write, save_json
from .plots import curves_figure, save
from .results import Job, read_stage, write_histories

# What the seed study reported (its write-up; not computed here).
SEED_STUDY = {
    "logistic": {"test_accuracy": 0.9877, "lr": 0.01},
    "softmax": {
        "val_accuracy": 0.88,
        "test_accuracy": 0.92,
        "l2": 1e-7,
        "iterations": 1000,
    },
}
LAST_N = 2000
STAGES = {  # stage -> parameter that its jobs vary
    "models": "model.name",
    "seed_protocol": "model.name",
    "logistic_lr": "optimizer.lr",
    "logistic_anneal": "optimizer.anneal_k",
    "logistic_l2": "model.l2",
    "softmax_l2": "model.l2",
}


def accuracies(job: Job, data: dict[str, np.ndarray], n_test_file: int) -> dict:
    """Test accuracy on the whole test set and on its last LAST_N images."""
    predicted = job.model.predict(data["x_test"])
    correct = predicted == data["t_test"]
    last = data["index_test"] >= n_test_file - LAST_N
    return {
        "val_accuracy": job.metrics["final_val_accuracy"],
        "test_accuracy": float(correct.mean()),
        f"test_accuracy_last{LAST_N}": float(correct[last].mean()),
        "test_images": int(len(correct)),
        f"test_images_last{LAST_N}": int(last.sum()),
        "epochs_run": job.metrics["epochs_run"],
        "best_epoch": job.metrics["best_epoch"],
    }


def sweep_metrics(jobs: list[Job], key: str) -> dict:
    name = key.split(".")[-1]
    return {
        f"{name}={job.param(key):g}": {
            "val_accuracy": job.metrics["final_val_accuracy"],
            "test_accuracy": job.metrics["final_test_accuracy"],
            "val_loss": job.metrics["final_val_loss"],
            "weight_norm": job.model.weight_norm(),
            "epochs_run": job.metrics["epochs_run"],
        }
        for job in jobs
    }


def headline(metrics: dict) -> dict:
    """The DVC metrics: the two models' validation and test accuracy (to one image
    in 10,000), short enough for `dvc metrics show` and the README's
    `dvc exp show` in 120 columns; every other number is in details.json."""
    return {
        model: {
            "val": round(metrics[model]["val_accuracy"], 4),
            "test": round(metrics[model]["test_accuracy"], 4),
        }
        for model in ("logistic", "softmax")
    }


def write_plot_data(path: Path, jobs: list[Job], key: str) -> None:
    """Every job's history in one CSV, labelled by the varied parameter."""
    name = key.split(".")[-1]
    write_histories(path, [(f"{name}={job.param(key)}", job.history) for job in jobs])


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def settings(job: Job) -> str:
    opt = job.config["optimizer"]
    batch = "full batch" if opt["batch_size"] is None else f"batch {opt['batch_size']}"
    anneal = f", lr / (1 + {opt['anneal_k']:g} t)" if opt["anneal_k"] else ""
    return (
        f"lr {opt['lr']:g}{anneal}, {batch}, at most {opt['max_epochs']:,} epochs, "
        f"patience {opt['patience']}, lambda {job.param('model.l2'):g}"
    )


def comparison_table(metrics: dict, seed_jobs: dict, model_jobs: dict) -> list[str]:
    ours, seed = metrics, metrics["seed_protocol"]
    last = f"test_accuracy_last{LAST_N}"

    def cells(model: str, key: str) -> str:
        keys = (key, last) if key == "test_accuracy" else (key, None)
        return " | ".join(
            pct(source[model][k]) if k else "" for source in (seed, ours) for k in keys
        )

    def epochs(model: str) -> str:
        cells = []
        for source in (seed, ours):
            run = source[model]
            cells += [f"{run['epochs_run']:,} (best {run['best_epoch']:,})", ""]
        return " | ".join(cells)

    published = SEED_STUDY
    lines = [
        "| | seed study | seed protocol, all test images | seed protocol, last "
        f"{LAST_N:,} | our defaults, all test images | our defaults, last {LAST_N:,} |",
        "|---|---|---|---|---|---|",
        f"| 2 vs 3, test accuracy | {pct(published['logistic']['test_accuracy'])} "
        f"(lr {published['logistic']['lr']:g}) | "
        f"{cells('logistic', 'test_accuracy')} |",
        f"| 2 vs 3, epochs run | | {epochs('logistic')} |",
        f"| 10 digits, validation accuracy | about "
        f"{100 * published['softmax']['val_accuracy']:.0f}% | "
        f"{cells('softmax', 'val_accuracy')} |",
        f"| 10 digits, test accuracy | about "
        f"{100 * published['softmax']['test_accuracy']:.0f}% "
        f"(lambda {published['softmax']['l2']:g}, "
        f"{published['softmax']['iterations']:,} iterations) | "
        f"{cells('softmax', 'test_accuracy')} |",
        f"| 10 digits, epochs run | {published['softmax']['iterations']:,} | "
        f"{epochs('softmax')} |",
    ]
    counts = (
        f"Test images: 2 vs 3, {ours['logistic']['test_images']:,} in all and "
        f"{ours['logistic'][f'test_images_last{LAST_N}']:,} among the last "
        f"{LAST_N:,}; 10 digits, {ours['softmax']['test_images']:,} and "
        f"{ours['softmax'][f'test_images_last{LAST_N}']:,}."
    )
    protocol = (
        f"Seed protocol: {settings(seed_jobs['logistic'])} (2 vs 3) and "
        f"{settings(seed_jobs['softmax'])} (10 digits). Our defaults: "
        f"{settings(model_jobs['logistic'])}."
    )
    return [*lines, "", counts, "", protocol]


def draw_figures(stages: dict[str, list[Job]], multi: dict, out: Path) -> list:
    """Save every figure; return (file name, one-line description) pairs."""
    softmax = {job.param("model.name"): job for job in stages["models"]}["softmax"]
    log_probs = losses.log_softmax(softmax.model.logits(multi["x_test"]))
    lrs, anneal = stages["logistic_lr"], stages["logistic_anneal"]
    l2, soft_l2 = stages["logistic_l2"], stages["softmax_l2"]
    best_lr = min(lrs, key=lambda job: job.metrics["final_val_loss"])
    shrink = l2[-1].model.weight_norm() / max(l2[0].model.weight_norm(), 1e-12)
    quickest = min(soft_l2, key=lambda job: job.metrics["epochs_run"])
    entries = [
        (
            "learning_rates.png",
            figures.learning_rates(lrs),
            "Validation loss per epoch of logistic regression (2 vs 3) for each "
            f"learning rate; lr = {best_lr.param('optimizer.lr'):g} reaches the "
            f"lowest, {best_lr.metrics['final_val_loss']:.4f} nats (seed Figure 2.1).",
        ),
        (
            "annealing.png",
            figures.annealing(anneal),
            "Loss and accuracy of train, validation and test per epoch, with a "
            "constant and an annealed rate (seed Figure 2.2).",
        ),
        (
            "l2_accuracy.png",
            figures.l2_accuracy(
                l2, "Logistic regression, 2 vs 3: validation accuracy per lambda"
            ),
            "Validation accuracy per epoch for each lambda (seed Figure 2.3).",
        ),
        (
            "l2_weight_norm.png",
            figures.l2_weight_norm(
                l2, "Logistic regression, 2 vs 3: length of the weights"
            ),
            "Length of the weight vector against lambda and during training; "
            f"lambda = {l2[-1].param('model.l2'):g} leaves {100 * shrink:.0f}% of the "
            "unpenalised length (seed Figure 2.4).",
        ),
        (
            "l2_weights.png",
            figures.l2_weight_images(l2, "Logistic regression weights per lambda"),
            "The weights as 28x28 images for each lambda, each on its own colour "
            "scale (seed Figure 2.5).",
        ),
        (
            "softmax_curves.png",
            curves_figure(softmax.history, "Softmax regression"),
            "Softmax regression: loss and accuracy of the three splits per epoch "
            "(seed Figure 3.1).",
        ),
        (
            "digits_and_weights.png",
            figures.digits_and_weights(multi["x_train"], multi["t_train"], softmax),
            "The average training image of each digit above its learned weights "
            "(seed Figure 3.2).",
        ),
        (
            "softmax_l2.png",
            figures.softmax_l2(soft_l2),
            f"Softmax lambda sweep: lambda = {quickest.param('model.l2'):g} stops "
            f"after {quickest.metrics['epochs_run']} epochs. A strong penalty holds "
            "the weights near their penalised optimum within a few epochs; after "
            "that the validation loss only fluctuates, and patience ends the run.",
        ),
        (
            "confusion.png",
            figures.confusion(multi["t_test"], log_probs.argmax(1)),
            "Confusion matrix of softmax regression on the test set.",
        ),
        (
            "worst_mistakes.png",
            figures.worst_misclassified(multi["x_test"], multi["t_test"], log_probs),
            "The test digits softmax regression got wrong with the most confidence.",
        ),
    ]
    for name, fig, _ in entries:
        save(fig, out / name)
    return [(name, text) for name, _, text in entries]


def build_report(cfg: DictConfig) -> dict:
    """Read every training stage, write metrics, plot data, figures, results.md."""
    results, reports = Path(cfg.study.results_dir), Path(cfg.study.reports_dir)
    stages, failed = {}, {}
    for name, key in STAGES.items():
        stages[name], failed[name] = read_stage(
            results / name, None if key == "model.name" else key
        )
    for name in ("models", "seed_protocol"):
        for job in failed[name]:
            raise DataError(
                f"stage {name}: run '{job.label}' failed ({job.reason}); the report "
                f"needs it: fix its settings, then `dvc repro {name}`"
            )
    data = {
        "logistic": load_task(cfg.data.prepared_dir, "binary"),
        "softmax": load_task(cfg.data.prepared_dir, "multiclass"),
    }
    n_test_file = int(data["softmax"]["index_test"].max()) + 1
    models = {job.param("model.name"): job for job in stages["models"]}
    seed = {job.param("model.name"): job for job in stages["seed_protocol"]}
    metrics = {m: accuracies(job, data[m], n_test_file) for m, job in models.items()}
    metrics["seed_protocol"] = {
        m: accuracies(job, data[m], n_test_file) for m, job in seed.items()
    }
    for name in ("logistic_lr", "logistic_anneal", "logistic_l2", "softmax_l2"):
        metrics[name] = sweep_metrics(stages[name], STAGES[name])
    save_json(reports / "details.json", metrics)
    save_json(reports / "metrics.json", headline(metrics))
    for name, key in STAGES.items():
        write_plot_data(reports / "plots" / f"{name}.csv", stages[name], key)
    described = draw_figures(stages, data["softmax"], reports / "figures")
    write_markdown(reports / "results.md", metrics, seed, models, described, failed)
    return metrics


def write_markdown(path: Path, metrics, seed, models, described, failed) -> None:
    lines = [
        "# Results",
        "",
        "Written by the `report` stage of `dvc repro` from the training stages' "
        "outputs; do not edit. Accuracies are those of the best epoch (lowest "
        "validation loss), whose weights early stopping restores.",
        "",
        "## Against the seed study",
        "",
        *comparison_table(metrics, seed, models),
        "",
        "## Figures",
        "",
    ]
    for name, text in described:
        lines += [f"![{name}](figures/{name})", "", text, ""]
    failures = [(stage, job) for stage, jobs in failed.items() for job in jobs]
    if failures:
        lines += [
            "## Failed runs",
            "",
            "These runs failed; the tables and figures above leave them out.",
            "",
            "| stage | run | reason |",
            "|---|---|---|",
            *(f"| {stage} | {job.label} | {job.reason} |" for stage, job in failures),
            "",
        ]
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(lines))
