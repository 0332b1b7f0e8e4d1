"""`dvc exp run` of the whole study on a small configuration, in a copy of the repo."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .conftest import BIN, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIGURES = [
    "learning_rates.png",
    "annealing.png",
    "l2_accuracy.png",
    "l2_weight_norm.png",
    "l2_weights.png",
    "softmax_curves.png",
    "digits_and_weights.png",
    "softmax_l2.png",
    "confusion.png",
    "worst_mistakes.png",
    "stability.png",
]


# The README's `dvc exp show`
TABLE = ["--no-pager", "--only-changed", "--drop", r"Created|.*/|.*\.yaml|results|conf"]
# registered model -> task
MODELS = {"mnist-logistic-2-vs-3": "binary", "mnist-softmax-10-digits": "multiclass"}


def small(mirror: Path) -> list[str]:
    """Overrides that shrink the study; each `dvc exp run` composes conf/ anew."""
    overrides = [
        f"data.download.mirror={mirror}",
        "data.download.urls=[]",
        "data.download.npm_package=null",
        "data.train_size=2000",
        "optimizer.max_epochs=5",
        "study.lr_grid='0.01,0.1'",
        "study.l2_grid='0,0.1'",
        "study.anneal_grid='0,0.001'",
        "study.seeds='0,1'",
        "study.sweep_seeds='0,1'",
        "study.seed_batches='null,64'",
    ]
    return [arg for override in overrides for arg in ("-S", override)]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", header[16:24])


def stages_run(output: str) -> set[str]:
    return {
        line.split("'")[1]
        for line in output.splitlines()
        if line.startswith("Running stage '")
    }


def pipeline_stages(repo: Path) -> set[str]:
    """Every stage of dvc.yaml, a foreach stage's items by their own names."""
    listed = run(["dvc", "stage", "list", "--name-only"], repo).stdout
    return set(listed.split())


def mlflow_runs(repo: Path, sweeps: bool = False):
    """The training runs; with ``sweeps``, the parent runs of the stages instead."""
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist-regression")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if ("sweep_grid" in r.data.tags) == sweeps]


def test_the_study_rebuilds_and_follows_its_parameters(repo_copy, npm_raw_dir):
    repo = repo_copy
    first = run(["dvc", "exp", "run", *small(npm_raw_dir)], repo)
    all_stages = pipeline_stages(repo)
    assert stages_run(first.stdout) == all_stages

    for name in FIGURES:
        width, height = png_size(repo / "reports" / "figures" / name)
        assert width >= 400 and height >= 200, name
    metrics = json.loads((repo / "reports" / "details.json").read_text())
    for model in ("logistic", "softmax"):
        summary = metrics[model]
        assert summary["seeds"] == 2 and set(summary["per_seed"]) == {"0", "1"}
        per_seed = [row["test_accuracy"] for row in summary["per_seed"].values()]
        assert summary["test_accuracy"]["mean"] == pytest.approx(np.mean(per_seed))
        assert set(metrics["seed_readings"][model]) == {"full batch", "batch 64"}
        full = metrics["seed_readings"][model]["full batch"]
        assert full["test_images_last"] < full["test_images"]
    assert set(metrics["logistic_l2"]) == {"l2=0", "l2=0.1"}
    assert set(metrics["logistic_lr"]) == {"lr=0.01", "lr=0.1"}
    report = (repo / "reports" / "results.md").read_text()
    assert "98.77%" in report
    mean = metrics["softmax"]["test_accuracy"]["mean"]
    assert f"{100 * mean:.2f}% ± " in report
    (reading,) = [
        line.split(" | ")
        for line in report.splitlines()
        if line.startswith("| 10 digits | batch 64 | ")
    ]
    assert 0 < int(reading[2].replace(",", "")) <= 1000  # softmax: 1,000 steps
    assert "#### 10 digits: the lambdas of `train@softmax_l2`" in report
    # the averaged default against the plain steps, at every lambda over the seeds
    assert "### The default optimizer against the plain steps it replaced" in report
    for model in ("logistic", "softmax"):
        compared = metrics["averaging"][model]
        assert set(compared) == {"l2=0", "l2=0.1"}
        for row in compared.values():
            assert row["seeds"] == 2
            assert row["verdict"] in {
                "within the noise",
                "gain beyond the noise",
                "loss beyond the noise",
            }
    assert "the code before delivery (00fe67a)" in report
    assert all(f"figures/{name}" in report for name in FIGURES)
    assert "<script" in (repo / "reports" / "plots_template.html").read_text()
    headline = json.loads((repo / "reports" / "metrics.json").read_text())
    assert headline["softmax"]["test"] == round(mean, 4)

    runs = mlflow_runs(repo)
    # one per trained model: models, logistic_lr, logistic_anneal, the two lambda
    # sweeps, l2_plain (both), seed_readings, seed_code
    assert len(runs) == 4 + 2 + 2 + 4 + 4 + 8 + 4 + 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    sweeps = mlflow_runs(repo, sweeps=True)  # one parent run per training stage
    assert sorted(r.data.tags["dvc.stage"] for r in sweeps) == sorted(
        name
        for name in all_stages
        if (repo / "results" / name.rpartition("@")[2]).is_dir()
    )
    assert {r.info.status for r in sweeps} == {"FINISHED"}
    # a lambda sweep replicated over seeds: its parent holds each lambda's mean
    # accuracy over them with a 95% interval, and so does details.json
    (l2_parent,) = [r for r in sweeps if r.data.tags["dvc.stage"] == "train@softmax_l2"]
    for value in ("0", "0.1"):
        prefix = f"over_seeds/l2 {float(value)}"
        found = l2_parent.data.metrics
        assert found[f"{prefix}/seeds"] == 2
        low, mean, high = (
            found[f"{prefix}/val_accuracy_{k}"] for k in ("low", "mean", "high")
        )
        assert low <= mean <= high
        detail = metrics["softmax_l2"][f"l2={value}"]
        assert detail["val_accuracy_mean"] == pytest.approx(mean, rel=1e-3)
    (experiment,) = {r.data.tags.get("dvc.experiment") for r in runs}
    assert experiment is not None
    for stage in {r.data.tags["dvc.stage"] for r in runs}:  # names tell jobs apart
        names = [r.info.run_name for r in runs if r.data.tags["dvc.stage"] == stage]
        assert len(set(names)) == len(names), names
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    # an experiment's best has its own alias, and there is no champion yet
    for name, task in MODELS.items():
        candidate = client.get_model_version_by_alias(name, f"candidate-{experiment}")
        chosen = client.get_run(candidate.run_id)
        assert chosen.data.tags["task"] == task
        same_task = [r for r in runs if r.data.tags["task"] == task]
        assert chosen.data.metrics["final_val_accuracy"] == max(
            r.data.metrics["final_val_accuracy"] for r in same_task
        )
        with pytest.raises(MlflowException, match="champion"):
            client.get_model_version_by_alias(name, "champion")

    again = run(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date." in again.stdout
    assert stages_run(again.stdout) == set()
    lock = (repo / "dvc.lock").read_text()
    run(["dvc", "repro", "--force", "--single-item", "train@models"], repo)
    assert (repo / "dvc.lock").read_text() == lock  # training outputs are bit-identical

    def trained_l2() -> dict:
        models = {}
        for job in sorted((repo / "results" / "models").glob("[0-9]*")):
            saved = json.loads((job / "metrics.json").read_text())
            models[saved["config"]["model"]["name"]] = saved["config"]["model"]["l2"]
        return models

    assert trained_l2() == {"logistic": 0.0, "softmax": 0.0}
    # the experiment becomes the committed study; its report names the champion
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "the study"], repo)
    run(["dvc", "repro", "--force", "--single-item", "report"], repo)
    champions = {name: best_of(repo, task) for name, task in MODELS.items()}
    for name, digest in champions.items():
        champion = client.get_model_version_by_alias(name, "champion")
        assert client.get_run(champion.run_id).data.tags["weights_sha256"] == digest
    norm_before = metrics["logistic_lr"]["lr=0.1"]["weight_norm"]
    changed = run(
        ["dvc", "exp", "run", *small(npm_raw_dir), "-S", "model.l2=0.5"], repo
    )
    assert stages_run(changed.stdout) == {
        "params",  # params.yaml changed: the check of it against conf/ runs again
        *(f"train@{name}" for name in ("models", "logistic_lr", "logistic_anneal")),
        # the lambda sweeps track the model section, their own grid's key included
        *(f"train@{name}" for name in ("logistic_l2", "softmax_l2")),
        "l2_plain",
        "report",
    }
    assert trained_l2() == {"logistic": 0.5, "softmax": 0.5}
    metrics = json.loads((repo / "reports" / "details.json").read_text())
    assert metrics["logistic_lr"]["lr=0.1"]["weight_norm"] < 0.8 * norm_before
    changed_runs = 4 + 2 + 2 + 4 + 4 + 8
    assert len(mlflow_runs(repo)) == 32 + 4 + changed_runs  # forced, changed
    (second,) = {r.data.tags.get("dvc.experiment") for r in mlflow_runs(repo)} - {
        experiment,
        None,
    }
    for name, digest in champions.items():  # the experiment has its own alias
        champion = client.get_model_version_by_alias(name, "champion")
        assert client.get_run(champion.run_id).data.tags["weights_sha256"] == digest
        candidate = client.get_model_version_by_alias(name, f"candidate-{second}")
        found = client.get_run(candidate.run_id).data.tags["weights_sha256"]
        assert found == best_of(repo, MODELS[name])  # of this experiment's outputs
    # no two parent runs of different experiments share a name
    parents: dict[str, set] = {}
    for sweep in mlflow_runs(repo, sweeps=True):
        tag = sweep.data.tags.get("dvc.experiment")
        parents.setdefault(sweep.info.run_name, set()).add(tag)
    assert all(len(tags) == 1 for tags in parents.values()), parents

    # the README's tables fit in 120 columns, experiments listed
    for command in (["dvc", "metrics", "show"], ["dvc", "exp", "show", *TABLE]):
        table = run(command, repo, COLUMNS="400").stdout  # as wide as it wants
        assert max(len(line.rstrip()) for line in table.splitlines()) <= 120, table
        assert "softmax.test" in table and "…" not in table
        if "exp" in command:  # what differs, named plainly; what does not, left out
            assert " model.l2 " in table and "optimizer.lr" not in table, table

    # the README's way back: the committed study from DVC's run cache, untrained
    back = run(["make", "restore", f"BIN={BIN}", "STAMP="], repo)
    assert not {s for s in stages_run(back.stdout) if s.startswith("train@")}
    assert "is cached - skipping run" in back.stdout
    assert trained_l2() == {"logistic": 0.0, "softmax": 0.0}
    assert (repo / "reports" / "figures" / FIGURES[0]).is_file()
    assert run(["git", "status", "--porcelain"], repo).stdout == ""  # this machine
    for name, digest in champions.items():
        assert best_of(repo, MODELS[name]) == digest
        champion = client.get_model_version_by_alias(name, "champion")
        assert client.get_run(champion.run_id).data.tags["weights_sha256"] == digest

    # in the root, with no tracking URI set, plain MLflow finds the champions,
    # which predict digits
    loaded = run(
        [str(BIN / "python"), "-c", LOAD_CHAMPIONS],
        repo,
        MLFLOW_TRACKING_URI="",
    )
    predicted = json.loads(loaded.stdout.strip().splitlines()[-1])
    labels = np.load(repo / "data" / "prepared" / "multiclass.npz")["t_test"][:50]
    assert set(predicted["mnist-logistic-2-vs-3"]) <= {2, 3}
    assert np.mean(np.array(predicted["mnist-softmax-10-digits"]) == labels) > 0.7


# What a user types in the repository root: no tracking URI anywhere.
LOAD_CHAMPIONS = """
import json, os
import mlflow, numpy as np
os.environ.pop("MLFLOW_TRACKING_URI")
x = np.load("data/prepared/multiclass.npz")["x_test"][:50]
print(json.dumps({
    name: mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(x).tolist()
    for name in ("mnist-logistic-2-vs-3", "mnist-softmax-10-digits")
}))
"""


def best_of(repo: Path, task: str) -> str:
    """The digest of the workspace's best job of ``task``, by the registry's rule."""
    from mnist_regression.study.champion import candidates, choose
    from mnist_regression.study.report import training_stages

    folders = [stage.folder for stage in training_stages(repo / "dvc.yaml")]
    found = candidates(repo / "results", folders, str(repo / "data" / "prepared"))
    return choose([j for j in found if j.task == task]).best.weights_sha256


def test_the_committed_lock_matches_the_code_and_params(repo_copy):
    """dvc.lock records the code and parameters the committed results came from:
    a change to a stage's code or parameters without `dvc repro` fails here."""
    lock = yaml.safe_load((repo_copy / "dvc.lock").read_text())["stages"]
    outs = {out["path"] for stage in lock.values() for out in stage.get("outs", [])}

    def produced(path: str) -> bool:  # by a stage: absent in a clone, not code
        return any(
            path == out or path.startswith(f"{out}/") or out.startswith(f"{path}/")
            for out in outs
        )

    status = json.loads(run(["dvc", "status", "--json"], repo_copy).stdout)
    stale = {
        stage: change
        for stage, changes in status.items()
        for entry in changes
        for kind, change in entry.items()
        if kind in ("changed deps", "changed params")
        and any(not produced(path) for path in change)
    }
    assert not stale, f"run `dvc repro` and commit dvc.lock: {stale}"
    assert set(lock) <= pipeline_stages(repo_copy)
