"""The project's own modules and what each imports, read from the source with
``ast`` (imports inside functions too): for the tests of dvc.yaml's deps and of
the package's layers."""

from __future__ import annotations

import ast

from .conftest import REPO_ROOT

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


def package_modules() -> list[str]:
    """Every module of the package, by dotted name (packages by their own)."""
    names = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names
