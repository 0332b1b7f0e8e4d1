"""The ``report`` stage: figures, DVC metrics and plot data, and results.md.

Every number in results.md is read from the training stages' outputs; only the
seed study's own published figures are constants, in ``original.SEED_STUDY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from omegaconf import DictConfig

from ..app.results import Job, read_stage, write_histories
from ..common.errors import DataError
from ..common.io import atomic_write, save_json
from ..core import losses
from ..core.losses import LOSSES
from ..core.stats import mean_interval
from ..data.prepare import PIXEL_MAX, load_task, pair_name
from ..figures.drawing import save
from ..tracking.target import project_root
from . import averaging, brief, figures, original, paired
from .original import Protocol, Reading, accuracies, over_seeds

# Significant digits of the committed numbers: float32 training determines about
# 7, and another processor moves the 7th or 8th; details.json keeps 6, the plot
# data 4 (a curve drawn at any size needs no more).
DIGITS = 6
PLOT_DIGITS = 4


def significant(tree, digits: int = DIGITS):
    """``tree`` with every float rounded to ``digits`` significant digits."""
    if isinstance(tree, dict):
        return {key: significant(value, digits) for key, value in tree.items()}
    if isinstance(tree, list):
        return [significant(value, digits) for value in tree]
    if isinstance(tree, float):
        return float(f"{tree:.{digits}g}")
    return tree


@dataclass(frozen=True)
class TrainingStage:
    """A training stage of dvc.yaml: its name, its folder of ``results/``, the
    one parameter its jobs vary (None: several, kept in the sweep's order), and
    the one that only replicates them (``seed``: each value once per seed)."""

    name: str
    folder: str
    varies: str | None
    replicates: str | None = None


def training_stages(pipeline: Path | None = None) -> list[TrainingStage]:
    """The training stages of ``dvc.yaml`` (those that run the Hydra app)."""
    pipeline = pipeline or project_root() / "dvc.yaml"
    found = []
    for name, stage in yaml.safe_load(pipeline.read_text())["stages"].items():
        entries = stage.get("foreach")
        if entries is None:
            entries = {None: {"vary": stage["cmd"]}}
            command = stage["cmd"]
        else:
            command = stage["do"]["cmd"]
        if "${train}" not in command:  # the Hydra app (vars: train)
            continue
        for key, item in entries.items():
            swept = [
                setting
                for setting, _, value in (
                    t.partition("=") for t in item["vary"].split()
                )
                if ("," in value or "${study." in value)
                and not setting.startswith(("hydra", "output_dir"))
            ]
            replicates = item.get("replicates")
            swept = [s for s in swept if s != replicates]
            varies = swept[0].lstrip("+") if len(swept) == 1 else None
            full = f"{name}@{key}" if key else name
            found.append(TrainingStage(full, key or name, varies, replicates))
    return found


def sweep_metrics(jobs: list[Job], key: str, replicated: list[Job] | None) -> dict:
    """Per value of ``key``: the job's numbers and, where the sweep replicated
    each value over seeds (``replicated``: all its jobs), the accuracies' mean
    over them with its 95% interval."""
    name = key.split(".")[-1]
    metrics = {}
    for job in jobs:
        row = {
            "val_accuracy": job.metrics["final_val_accuracy"],
            "test_accuracy": job.metrics["final_test_accuracy"],
            "val_loss": job.metrics["final_val_loss"],
            "weight_norm": job.model.weight_norm(),
            "epochs_run": job.metrics["epochs_run"],
        }
        if replicated:
            same = [j for j in replicated if j.param(key) == job.param(key)]
            row["seeds"] = len(same)
            for split in ("val", "test"):
                mean, low, high = mean_interval(
                    [j.metrics[f"final_{split}_accuracy"] for j in same]
                )
                row[f"{split}_accuracy_mean"] = mean
                row[f"{split}_accuracy_interval"] = [low, high]
        metrics[f"{name}={job.param(key):g}"] = row
    return metrics


def one_per_value(jobs: list[Job], stage: TrainingStage, seed: int) -> list[Job]:
    """A replicated sweep's job of the configured seed for each value (the first
    one where that seed is missing), in the sweep's order."""
    chosen: dict = {}
    for job in jobs:
        value = job.param(stage.varies)
        if job.param(stage.replicates) == seed:
            chosen[value] = job
        else:
            chosen.setdefault(value, job)
    return list(chosen.values())


def headline(metrics: dict) -> dict:
    """The DVC metrics: each model's validation and test accuracy, the mean over
    the seeds (to one image in 10,000), short enough for `dvc metrics show` and the
    README's `dvc exp show` in 120 columns; every other number is in details.json."""
    return {
        model: {
            "val": round(metrics[model]["val_accuracy"]["mean"], 4),
            "test": round(metrics[model]["test_accuracy"]["mean"], 4),
        }
        for model in LOSSES
    }


def write_plot_data(
    path: Path, jobs: list[Job], key: str | None, replicates: str | None = None
) -> None:
    """Every job's history in one CSV, labelled by the varied parameter (and the
    replicating one, where there is one)."""
    if key is None:
        labelled = [(job.label, job.history) for job in jobs]
    else:
        name = key.split(".")[-1]
        labelled = [
            (
                f"{name}={job.param(key)}"
                + (f" {replicates}={job.param(replicates)}" if replicates else ""),
                job.history,
            )
            for job in jobs
        ]
    write_histories(path, labelled, PLOT_DIGITS)


def settings(job: Job) -> str:
    opt = job.config["optimizer"]
    batch = "full batch" if opt["batch_size"] is None else f"batch {opt['batch_size']}"
    anneal = f", lr / (1 + {opt['anneal_k']:g} t)" if opt["anneal_k"] else ""
    limit = (
        f"at most {opt['max_steps']:,} steps"
        if opt["max_steps"] is not None and opt["max_steps"] <= opt["max_epochs"]
        else f"at most {opt['max_epochs']:,} epochs"
    )
    watched = {"loss": "val_loss", "objective": "validation cost"}.get(
        opt["monitor"], "validation cost / (n k)"
    )
    stop = (
        f"stop when the {watched} rose {opt['patience']} times in a row"
        if opt["stop_when"] == "rising"
        else f"patience {opt['patience']} on the {watched}"
    )
    keep = "" if opt["restore_best"] else ", last weights kept"
    if opt.get("average") == "epoch" and opt["batch_size"] is not None:
        batch += " averaged over each epoch"
    model, scale = job.config["model"], job.config["data"]["scale"]
    pixels = "" if scale == PIXEL_MAX else f", pixels / {scale:g}"
    bias = {"free": "", "penalised": ", bias penalised", "none": ", no bias"}
    return (
        f"lr {opt['lr']:.3g}{anneal}, {batch}, {limit}, {stop}{keep}, "
        f"lambda {model['l2']:g}{bias[model['bias']]}{pixels}"
    )


def per_task(binary: str, digits: str) -> str:
    """Settings said once where both tasks share them, else for each task."""
    if binary == digits:
        return binary
    return f"2 vs 3: {binary}; 10 digits: {digits}"


def comparison(
    metrics: dict, readings: dict, models: dict, protocols: dict, families: list
) -> list[str]:
    """The section on the seed study: protocols, readings, seeds, gaps, in words
    and tables; ``families``: the paired tests, which the verdicts follow."""
    tests = {(f.task, f.stage): f.tests for f in families}
    preset = {
        m: next(r for r in rs if r.name == "full batch") for m, rs in readings.items()
    }
    row = preset["softmax"].row
    lines = [
        "Each accuracy is followed by its 95% Wilson interval for the size of its "
        f"set. The sets: 2 vs 3, {original.images_per_point(preset['logistic'].row)};"
        f" 10 digits, {original.images_per_point(row)}.",
        "",
        "### The protocols side by side",
        "",
        "The study's text and its authors' code differ, and the code changed at "
        "delivery (`conf/experiment/seed_code.yaml`, `seed_delivered.yaml`). Each "
        "protocol's correct images, k of n, with the 95% Wilson interval in "
        "percent; the study printed percentages, shown here as the counts they can "
        "stand for. The protocols:",
        "",
        *(
            f"- {p.name}: {settings(p.job)} for 2 vs 3; "
            f"{settings(q.job)} for 10 digits."
            for p, q in zip(
                protocols["logistic"][:-1], protocols["softmax"][:-1], strict=True
            )
        ),
        "",
        *original.protocols_table(protocols),
        "",
        *(
            f"- {sentence}"
            for model, ps in protocols.items()
            for sentence in original.reproduction(model, ps)
        ),
        "",
        '### What an "iteration" was',
        "",
        "The study's text does not say whether an iteration is a step on the "
        "whole training set, on one example (its eq. 21) or on a mini-batch; its "
        "code shows one full-batch step. The other readings show what that choice "
        "changes: the `seed_readings` stage runs each with the text's settings, "
        "`experiment=seed`: "
        f"{settings(preset['logistic'].job)} for 2 vs 3, "
        f"{settings(preset['softmax'].job)} for 10 digits, batch as in the table.",
        "",
        *original.readings_table(readings),
        "",
        *(
            original.verdict(model, rs, tests[original.TASK[model], "seed_readings"])
            for model, rs in readings.items()
        ),
        "",
        "### Our defaults, over seeds",
        "",
        f"Mean ± standard deviation over the seeds of the mini-batch order "
        f"({per_task(settings(models['logistic']), settings(models['softmax']))}); "
        "the interval is that of the mean's accuracy on its set.",
        "",
        *original.seeds_table({m: metrics[m] for m in LOSSES}),
        "",
        "### The gaps",
        "",
    ]
    for model in LOSSES:
        for sentence in original.gaps(model, preset[model], metrics[model]):
            lines += [f"- {sentence}"]
        easier = original.last_images_easier(model, preset[model].row)
        if easier:
            lines += [f"- {easier}"]
    return lines


def paired_section(families: list[Family]) -> list[str]:
    """The paired tests: per family, a sentence true of every test, the table."""
    lines = [
        "### Paired tests on the same test images",
        "",
        "Intervals of a few hundred images overlap where the models differ; "
        "scored on the same images, two models differ only where one is right and "
        "the other wrong. Each family below is a set of exact McNemar tests on all "
        "test images, with Holm's correction over the family.",
        "",
    ]
    for family in families:
        lines += [
            f"#### {family.title} ({family.n:,} test images)",
            "",
            paired.summary(family.tests),
            "",
            *paired.table(family.tests, family.n),
            "",
        ]
    return lines


@dataclass(frozen=True)
class Family:
    """Paired tests Holm-corrected together: on which task and test images, and
    the training stage whose jobs they compare (None: several stages)."""

    title: str
    task: str
    tests: list
    n: int
    stage: str | None


def paired_families(stages, readings, protocols, data) -> list[Family]:
    """The families of paired tests: the lambdas of each sweep, the readings of
    an iteration, and each seed protocol against our defaults."""

    def correct(job: Job, model: str) -> np.ndarray:
        return job.model.predict(data[model]["x_test"]) == data[model]["t_test"]

    def family(model, title, by_name, stage, pairs=None) -> Family:
        task = original.TASK[model]
        tests = paired.family(by_name, pairs)
        return Family(
            f"{task}: {title}", task, tests, len(data[model]["t_test"]), stage
        )

    families = []
    for stage, model in (("logistic_l2", "logistic"), ("softmax_l2", "softmax")):
        by_lambda = {
            f"lambda {job.param('model.l2'):g}": correct(job, model)
            for job in stages[stage]
        }
        seed = stages[stage][0].param("seed")
        title = f"the lambdas of `train@{stage}`, seed {seed}"
        families.append(family(model, title, by_lambda, stage))
    for model, rows in readings.items():
        by_reading = {r.name: correct(r.job, model) for r in rows}
        title = "the readings of an iteration"
        families.append(family(model, title, by_reading, "seed_readings"))
    for model, rows in protocols.items():
        by_protocol = {p.name: correct(p.job, model) for p in rows}
        pairs = [(p.name, rows[-1].name) for p in rows[:-1]]
        title = "the seed protocols against our defaults"
        families.append(family(model, title, by_protocol, None, pairs))
    return families


def draw_figures(
    stages, sweeps, protocols, softmax: Job, tasks: dict, pair: str, out: Path
):
    """Save every figure; return (file name, one-line description) pairs.
    ``tasks``: each model's prepared data; ``pair``: the binary task's name."""
    entries = [
        *seed_figures(protocols, tasks["softmax"], pair),
        *logistic_figures(stages, sweeps, pair),
        *softmax_figures(stages, sweeps, softmax, tasks["softmax"]),
        stability_figure(tasks, pair),
    ]
    for name, fig, _ in entries:
        save(fig, out / name)
    return [(name, text) for name, _, text in entries]


def seed_figures(protocols: dict, multi, pair: str) -> list[tuple]:
    """The seed study's Figures 2.1, 2.2, 3.1 and 3.2 from its own settings: the
    text's full-batch logistic run at alpha = 0.01 and the softmax model of its
    code as delivered, the one that reproduces its softmax numbers."""
    text = protocols["logistic"][0].job
    delivered = next(
        p.job
        for p in protocols["softmax"]
        if "delivered" in str((p.job.config.get("seed_code") or {}).get("version"))
    )
    how = f"(`experiment=seed_delivered`: {settings(delivered)})"
    title = f"Logistic regression, {pair}, alpha = {text.param('optimizer.lr'):g}"
    return [
        (
            "seed_figure_2_1.png",
            figures.seed_curves(text.history, "loss", f"{title}: loss"),
            f"Seed Figure 2.1 from the text's settings ({settings(text)}): the "
            "cross-entropy of the three splits per full-batch iteration.",
        ),
        (
            "seed_figure_2_2.png",
            figures.seed_curves(text.history, "accuracy", f"{title}: accuracy"),
            "Seed Figure 2.2, the same run: the accuracy of the three splits per "
            "iteration.",
        ),
        (
            "seed_figure_3_1.png",
            figures.curves(
                delivered.history,
                "Softmax regression, as the seed's code ran it",
                unit="iteration",
            ),
            f"Seed Figure 3.1 from the softmax model of the seed's code {how}: loss "
            "and accuracy of the three splits per iteration.",
        ),
        (
            "seed_figure_3_2.png",
            figures.digits_and_weights(
                multi["x_train"],
                multi["t_train"],
                delivered,
                "Average training image of each digit and the weights of the seed's "
                "softmax model",
                dark=True,
            ),
            "Seed Figure 3.2, the same model: each digit's average training image, "
            "white on black as MNIST stores it, above its weights, all on one "
            "colour scale.",
        ),
    ]


def logistic_figures(stages: dict[str, list[Job]], sweeps, pair: str) -> list[tuple]:
    """The seed study's Figures 2.1-2.5: (file name, figure, description)."""
    lrs, l2 = stages["logistic_lr"], stages["logistic_l2"]
    best_lr = min(lrs, key=lambda job: job.metrics["final_val_loss"])
    shrink = l2[-1].model.weight_norm() / max(l2[0].model.weight_norm(), 1e-12)
    title = f"Logistic regression, {pair}"
    return [
        (
            "learning_rates.png",
            figures.learning_rates(lrs, title),
            f"Validation loss per epoch of logistic regression ({pair}) for each "
            f"learning rate; lr = {best_lr.param('optimizer.lr'):g} reaches the "
            f"lowest, {best_lr.metrics['final_val_loss']:.4f} nats (ours: the "
            "rates of seed Figure 2.1 at our settings).",
        ),
        (
            "annealing.png",
            figures.annealing(stages["logistic_anneal"], title),
            "Loss and accuracy of train, validation and test per epoch, with a "
            "constant and an annealed rate (ours, at our settings).",
        ),
        (
            "l2_accuracy.png",
            figures.l2_accuracy(
                l2, f"{title}: validation accuracy per lambda", sweeps["logistic_l2"]
            ),
            "Validation accuracy per epoch for each lambda, and each lambda's final "
            "accuracy over the seeds with its 95% interval (ours: seed Figure 2.3 "
            "at our settings).",
        ),
        (
            "l2_weight_norm.png",
            figures.l2_weight_norm(l2, f"{title}: length of the weights"),
            "Length of the weight vector against lambda and during training; "
            f"lambda = {l2[-1].param('model.l2'):g} leaves {100 * shrink:.0f}% of the "
            "unpenalised length (ours: seed Figure 2.4 at our settings).",
        ),
        (
            "l2_weights.png",
            figures.l2_weight_images(l2, "Logistic regression weights per lambda"),
            "The weights as 28x28 images for each lambda, each on its own colour "
            "scale (ours: seed Figure 2.5 at our settings).",
        ),
    ]


def softmax_figures(stages: dict[str, list[Job]], sweeps, softmax: Job, multi) -> list:
    """The seed study's Figures 3.1-3.2, the lambda sweep and the mistakes."""
    log_probs = losses.log_softmax(softmax.model.logits(multi["x_test"]))
    quickest = min(stages["softmax_l2"], key=lambda job: job.metrics["epochs_run"])
    return [
        (
            "softmax_curves.png",
            figures.curves(softmax.history, "Softmax regression"),
            "Softmax regression: loss and accuracy of the three splits per epoch "
            "(ours: seed Figure 3.1 at our settings).",
        ),
        (
            "digits_and_weights.png",
            figures.digits_and_weights(
                multi["x_train"],
                multi["t_train"],
                softmax,
                "Softmax regression: average training image and learned weights",
            ),
            "The average training image of each digit above its learned weights "
            "(ours: seed Figure 3.2 at our settings).",
        ),
        (
            "softmax_l2.png",
            figures.softmax_l2(stages["softmax_l2"], sweeps["softmax_l2"]),
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


def stability_figure(tasks: dict, pair: str) -> tuple:
    """Full-batch descent around the stability limit, for both models."""
    binary, multi = tasks["logistic"], tasks["softmax"]
    fig, stable = figures.stability(
        {
            f"logistic, {pair}": (binary["x_train"], binary["t_train"], "logistic", 2),
            "softmax, 10 digits": (multi["x_train"], multi["t_train"], "softmax", 10),
        }
    )
    rates = "; ".join(
        f"{name} (limit {found['limit']:.3g}): "
        + ", ".join(
            f"{100 * found['swing'][f]:.1f}% at {f:g}x"
            for f in figures.STABILITY_FACTORS
        )
        for name, found in stable.items()
    )
    return (
        "stability.png",
        fig,
        "Full-batch gradient descent from w = 0 with lambda = "
        f"{figures.STABILITY_L2:g}, which holds the weights near 0, at rates "
        "around the stability limit 2 / (L + lambda) (docs/pipeline.md), on the "
        f"first {figures.STABILITY_EXAMPLES:,} training images. How far the loss "
        f"swings over the last 20 of {figures.STABILITY_STEPS} steps (0 where it "
        f"settled): {rates}.",
    )


def build_report(cfg: DictConfig) -> dict:
    """Read every training stage, write metrics, plot data, figures, results.md."""
    results, reports = Path(cfg.study.results_dir), Path(cfg.study.reports_dir)
    training = {stage.folder: stage for stage in training_stages()}
    stages, failed = {}, {}
    replicated = {}
    for name, stage in training.items():
        stages[name], failed[name] = read_stage(results / name, stage.varies)
        if stage.replicates:
            replicated[name] = stages[name]
            stages[name] = one_per_value(stages[name], stage, cfg.seed)
    for name in ("models", "seed_readings", "seed_code"):
        for job in failed[name]:
            raise DataError(
                f"stage {training[name].name}: run '{job.label}' failed "
                f"({job.reason}); the report needs it: fix its settings, then "
                f"`dvc repro {training[name].name}`"
            )
    data = {
        model: load_task(cfg.data.prepared_dir, loss.task)
        for model, loss in LOSSES.items()
    }
    n_test_file = int(data["softmax"]["index_test"].max()) + 1

    def rows(jobs: list[Job], model: str) -> list[tuple[Job, dict]]:
        return [
            (job, accuracies(job, data[model], n_test_file))
            for job in jobs
            if job.param("model.name") == model
        ]

    metrics, readings, models = {}, {}, {}
    for model in LOSSES:
        seeded = rows(stages["models"], model)
        metrics[model] = over_seeds([row for _, row in seeded])
        metrics[model]["per_seed"] = {job.param("seed"): row for job, row in seeded}
        # the model of the figures and the registry's comparisons: the configured seed
        models[model] = next(
            (job for job, _ in seeded if job.param("seed") == cfg.seed), seeded[0][0]
        )
        readings[model] = [
            Reading(original.reading(job), job, row)
            for job, row in rows(stages["seed_readings"], model)
        ]
    protocols = {
        model: [
            Protocol(
                "the text's protocol (`experiment=seed`, full batch)",
                next(r for r in readings[model] if r.name == "full batch").job,
                next(r for r in readings[model] if r.name == "full batch").row,
            ),
            *(
                Protocol(f"the code {job.param('seed_code.version')}", job, row)
                for job, row in rows(stages["seed_code"], model)
            ),
            Protocol(
                f"our defaults (seed {models[model].param('seed')})",
                models[model],
                metrics[model]["per_seed"][models[model].param("seed")],
            ),
        ]
        for model in LOSSES
    }
    metrics["protocols"] = {
        model: {p.name: p.row for p in ps} for model, ps in protocols.items()
    }
    metrics["seed_readings"] = {
        model: {r.name: {**r.row, "within_noise": r.within(model)} for r in rs}
        for model, rs in readings.items()
    }
    for name in ("logistic_lr", "logistic_anneal", "logistic_l2", "softmax_l2"):
        metrics[name] = sweep_metrics(
            stages[name], training[name].varies, replicated.get(name)
        )
    n_val = {model: len(data[model]["t_val"]) for model in LOSSES}
    l2_sweeps = {model: replicated[f"{model}_l2"] for model in LOSSES}
    metrics["averaging"] = averaging.compare(l2_sweeps, stages["l2_plain"], n_val)
    families = paired_families(stages, readings, protocols, data)
    metrics["paired"] = {
        f.title: {"stage": f.stage, "task": f.task, "tests": [vars(t) for t in f.tests]}
        for f in families
    }
    details = significant(metrics)
    save_json(reports / "details.json", details)
    save_json(reports / "metrics.json", headline(metrics))
    for name, stage in training.items():
        write_plot_data(
            reports / "plots" / f"{name}.csv",
            replicated.get(name, stages[name]),
            stage.varies,
            stage.replicates if name in replicated else None,
        )
    pair = pair_name(cfg.data.digits)
    described = draw_figures(
        stages, metrics, protocols, models["softmax"], data, pair, reports / "figures"
    )
    section = comparison(metrics, readings, models, protocols, families)
    plain = stages["l2_plain"][0].config["optimizer"]
    section += [
        "",
        *averaging.section(
            metrics["averaging"],
            n_val,
            f"`optimizer.lr={plain['lr']:g}`, `optimizer.average={plain['average']}`",
        ),
    ]
    section += ["", *paired_section(families)]
    section = [*brief.in_brief(details), "", "## Against the seed study", "", *section]
    write_markdown(reports / "results.md", section, described, failed)
    return metrics


def write_markdown(path: Path, section: list[str], described, failed) -> None:
    lines = [
        "# Results",
        "",
        "Written by the `report` stage of `dvc repro` from the training stages' "
        "outputs; do not edit. Accuracies are those of the weights a run ends "
        "with: its best epoch's (lowest validation value) where early stopping "
        "restores them, as our defaults do and as we read the text's protocol "
        "(the text does not say which weights it kept); its last iteration's in "
        "the code's protocols. The seed study: "
        f"{original.CITATION}.",
        "",
        *section,
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
