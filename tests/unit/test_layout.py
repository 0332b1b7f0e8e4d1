"""The package's layers: each folder imports only from the folders below it, and
no module imports itself back through others (no cycle, however hidden)."""

from __future__ import annotations

from ..conftest import REPO_ROOT
from ..project_code import PACKAGE, package_modules, project_imports

# Lowest first. A module may import from its own layer and the layers before it.
LAYERS = [
    {"common"},
    {"core", "data"},
    {"figures"},
    {"tracking"},
    {"app"},
    {"study"},
    {"train", "params", "stages"},
]


def layer(module: str) -> int:
    room = module.split(".")[1] if "." in module else ""
    (found,) = [i for i, rooms in enumerate(LAYERS) if room in rooms]
    return found


def test_every_module_has_a_layer():
    rooms = {m.split(".")[1] for m in package_modules() if "." in m}
    assert rooms == set().union(*LAYERS)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{module} -> {imported}"
        for module in package_modules()
        if "." in module
        for imported in project_imports(module)
        if imported != PACKAGE and layer(imported) > layer(module)
    ]
    assert not upward, upward


def test_the_import_graph_has_no_cycle():
    graph = {m: project_imports(m) - {m} for m in package_modules()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == 1:
                return [*path, module, imported]
            if imported not in state:
                found = visit(imported, [*path, module])
                if found:
                    return found
        state[module] = 2
        return None

    for module in graph:
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle)


def test_every_integration_module_is_marked_so():
    """`pytest -m "not integration"` does not import tests/integration/ at all."""
    for path in sorted((REPO_ROOT / "tests" / "integration").glob("test_*.py")):
        head = path.read_text().split("\ndef ", 1)[0]
        assert "pytest.mark.integration" in head, path.name
