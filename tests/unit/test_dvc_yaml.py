"""dvc.yaml: every stage depends on all the project code its command runs."""

from __future__ import annotations

import ast
import re

import pytest

from ..conftest import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = "mnist_regression"


def module_file(name: str):
    path = SRC.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def project_imports(name: str) -> set[str]:
    """The project modules ``name`` imports anywhere in its text, functions too."""
    file = module_file(name)
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {
            c
            for c in candidates
            if c.split(".")[0] == PACKAGE and module_file(c).is_file()
        }
    return found


def code_of(module: str) -> set[str]:
    """Files of the module and of every project module it reaches (no __init__)."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(project_imports(name))
    files = {module_file(name).relative_to(REPO_ROOT).as_posix() for name in seen}
    return {f for f in files if not f.endswith("__init__.py")}


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
    # run_log.py imports serving.py inside a method only
    assert "src/mnist_regression/tracking/serving.py" in code_of(
        "mnist_regression.tracking.run_log"
    )


def test_a_folder_covers_its_files_only():
    deps = {"src/mnist_regression/core"}
    assert covered("src/mnist_regression/core/losses.py", deps)
    assert not covered("src/mnist_regression/common/io.py", deps)
