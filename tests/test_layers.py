"""The package layers, checked over the import graph of ``src/mmsearch``.

Every import between packages (and top-level modules) must point down this list, and
packages on one line are siblings that must not import each other. Imports inside
functions count too: a lazy import is still a dependency. The order is the map in
docs/ARCHITECTURE.md ("Packages in layer order"); a new package is added here first.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import mmsearch

SRC = Path(mmsearch.__file__).parent

LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"commands"},
    {"service"},
    {"ingest"},
    {"builds"},
    {"datasets", "monitoring"},
    {"governance", "evaluation"},
    {"search"},
    {"graph"},
    {"ranking"},
    {"retrieval"},
    {"index"},
    {"moderation"},
    {"encoders", "filters"},
    {"writer_lock", "workspace", "sample_data", "terminal"},
    {"collection_state"},
    {"manifest"},
    {"catalog"},
    {"media"},
    {"table_files", "clock", "config", "processes", "blas"},
    {"errors", "__init__"},
]


def unit_of(path: Path) -> str:
    """The package (or top-level module) a source file belongs to."""
    relative = path.relative_to(SRC)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported_units(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mmsearch":  # ``from mmsearch import __version__``
                found.update(
                    "__init__" if alias.name == "__version__" else alias.name
                    for alias in node.names
                )
            elif node.module.startswith("mmsearch."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mmsearch."))
    return found


def import_graph() -> dict[str, dict[str, set[str]]]:
    """unit → imported unit → the files that import it."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in SRC.rglob("*.py"):
        unit = unit_of(path)
        for target in imported_units(ast.parse(path.read_text(encoding="utf-8"))):
            if target != unit:
                graph[unit][target].add(str(path.relative_to(SRC)))
    return graph


def layer_of(unit: str) -> int:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    raise AssertionError(f"{unit} is in no layer: add it to LAYERS in {__file__}")


def test_every_package_has_a_layer():
    units = {unit_of(path) for path in SRC.rglob("*.py")}
    for unit in units:
        layer_of(unit)
    assert len(units) >= 25


def test_imports_only_point_down_the_layers():
    graph = import_graph()
    wrong = sorted(
        f"{unit} -> {target} ({', '.join(sorted(files))})"
        for unit, targets in graph.items()
        for target, files in targets.items()
        if layer_of(target) <= layer_of(unit)
    )
    edges = sum(len(targets) for targets in graph.values())
    print(f"{len(graph)} importing units, {edges} arrows between units, {len(wrong)} wrong-way")
    assert wrong == []


def test_there_is_no_package_cycle():
    graph = import_graph()
    seen: set[str] = set()
    stack: list[str] = []

    def visit(unit: str) -> None:
        if unit in stack:
            raise AssertionError("cycle: " + " -> ".join([*stack[stack.index(unit) :], unit]))
        if unit in seen:
            return
        stack.append(unit)
        for target in graph.get(unit, {}):
            visit(target)
        stack.pop()
        seen.add(unit)

    for unit in list(graph):
        visit(unit)


def test_the_check_sees_a_wrong_way_import(tmp_path):
    """The graph reader finds function-level imports and ``from mmsearch import``."""
    tree = ast.parse(
        "def f():\n    from mmsearch.service.app import create_app\n"
        "from mmsearch import __version__\nimport mmsearch.index.open\n"
    )
    assert imported_units(tree) == {"service", "__init__", "index"}
    assert layer_of("service") < layer_of("index")
