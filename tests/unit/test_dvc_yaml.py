"""dvc.yaml: every stage depends on all the project code its command runs."""

from __future__ import annotations

import ast
import re

import pytest
import yaml

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
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    train = pipeline["vars"][0]["train"]
    for name, stage in pipeline["stages"].items():
        command = stage["cmd"].replace("${train}", train)
        (module,) = re.findall(r"python -m (\S+)", command)
        yield pytest.param(module, set(stage.get("deps", [])), id=name)


@pytest.mark.parametrize(("module", "deps"), list(stages()))
def test_each_stage_depends_on_the_code_it_runs(module, deps):
    missing = code_of(module) - deps
    assert not missing, f"dvc.yaml: add to the stage's deps: {sorted(missing)}"


def test_the_import_walk_sees_imports_inside_functions():
    # tracking.py imports serving.py inside a method only
    assert "src/mnist_regression/serving.py" in code_of("mnist_regression.tracking")
