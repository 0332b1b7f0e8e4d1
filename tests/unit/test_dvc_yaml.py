"""dvc.yaml: every stage depends on all the project code its command runs."""

from __future__ import annotations

import re

import pytest

from ..conftest import REPO_ROOT
from ..project_code import code_of


def stages():
    """(module run, deps) of each stage, as DVC itself resolves dvc.yaml."""
    from dvc.repo import Repo

    with Repo(str(REPO_ROOT)) as repo:
        for stage in repo.index.stages:
            (module,) = re.findall(r"python -m (\S+)", stage.cmd)
            deps = {dep.def_path for dep in stage.deps}
            yield pytest.param(module, deps, id=stage.addressing)


def covered(path: str, deps: set[str]) -> bool:
    """Whether ``path`` or a folder above it is among ``deps``."""
    parts = path.split("/")
    return any("/".join(parts[:i]) in deps for i in range(1, len(parts) + 1))


@pytest.mark.parametrize(("module", "deps"), list(stages()))
def test_each_stage_depends_on_the_code_it_runs(module, deps):
    missing = {path for path in code_of(module) if not covered(path, deps)}
    assert not missing, f"dvc.yaml: add to the stage's deps: {sorted(missing)}"


def test_the_import_walk_sees_imports_inside_functions():
    # index.py imports serving.py inside a function only
    assert "src/mnist_regression/tracking/serving.py" in code_of(
        "mnist_regression.tracking.index"
    )


def test_a_folder_covers_its_files_only():
    deps = {"src/mnist_regression/core"}
    assert covered("src/mnist_regression/core/losses.py", deps)
    assert not covered("src/mnist_regression/common/io.py", deps)


def test_the_params_check_comes_before_every_other_stage():
    """``dvc repro <any stage>`` checks params.yaml against conf/ first."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(REPO_ROOT)) as repo:
        graph = repo.index.graph
        (check,) = [s for s in graph if s.addressing == "params"]
        for stage in graph:
            if stage is not check:
                # DVC's graph points from a stage to the stages it depends on
                assert nx.has_path(graph, stage, check), stage.addressing


def test_each_training_stage_has_a_titled_plot():
    """``dvc plots show`` titles each stage's curves, never with a file path."""
    from dvc.repo import Repo

    from mnist_regression.study.report import training_stages

    with Repo(str(REPO_ROOT)) as repo:
        definitions = {}
        for plots in repo.plots.collect(onerror=None):
            for config in plots["workspace"]["definitions"]["data"].values():
                definitions |= config["data"]
    for stage in training_stages(REPO_ROOT / "dvc.yaml"):
        (found,) = [
            d
            for path, d in definitions.items()
            if path.endswith(f"plots/{stage.folder}.csv")
        ]
        assert found.get("title") and "/" not in found["title"], stage.name
        assert found.get("y_label") and found.get("x_label"), stage.name
