"""The import structure ARCHITECTURE.md describes, checked on the source with ``ast``.

Every ``import`` / ``from ... import`` in every module under edgekit/ counts, including the ones inside
functions (heavy libraries load lazily there, and so do many edgekit imports) and under TYPE_CHECKING.
A *unit* is a top-level module (``edgekit/artifacts.py``) or a sub-package (``edgekit/profiling/``).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "edgekit"

# Lowest first. A unit may import units of its own layer or below, never above. Same list as ARCHITECTURE.md.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"edgekit", "errors", "naming", "resources", "progress", "_tf", "tables", "html_report",
                    "gates", "child_process", "options", "machine"}),
    ("records", {"artifacts", "data", "metrics", "plots", "keras_io"}),
    ("models", {"runtime", "backbones"}),
    ("model tools", {"importer", "evaluation", "monitoring"}),
    ("stages", {"targets", "stages"}),
    ("devices", {"devices"}),
    ("profiling", {"profiling"}),
    ("recipes", {"recipes"}),
    ("api", {"api"}),
    ("cli", {"cli", "__main__"}),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The edgekit modules ``name`` imports anywhere in its source (``from pkg import sub`` names the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                targets.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
    return {t for t in targets if (t == "edgekit" or t.startswith("edgekit.")) and t != name}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgekit"


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def unit_graph(graph: dict[str, set[str]]) -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the module-level edges that make it (``a -> b``)."""
    units: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for source, targets in graph.items():
        units[_unit(source)]
        for target in targets:
            if _unit(target) != _unit(source):
                units[_unit(source)][_unit(target)].append(f"{source} -> {target}")
    return units


def cycles(graph: dict[str, set[str]] | dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(unit: str) -> int:
    return next(i for i, (_, members) in enumerate(LAYERS) if unit in members)


def upward_imports(units: dict[str, dict[str, list[str]]]) -> list[str]:
    return [f"{edge}  ({LAYERS[layer_of(source)][0]} imports {LAYERS[layer_of(target)][0]})"
            for source, targets in units.items() for target, edges in targets.items()
            if layer_of(target) > layer_of(source) for edge in edges]


def test_the_parser_sees_imports_inside_functions_and_relative_ones():
    """The checks below are only as good as the parser: a lazy import inside a function must count."""
    graph = import_graph()
    assert "edgekit.stages.compress" in graph["edgekit.api"]  # `from ... import` inside api.compress()
    assert "edgekit.errors" in graph["edgekit.artifacts"]
    assert any(len(targets) > 5 for targets in graph.values())


def test_every_unit_has_a_layer():
    units = unit_graph(import_graph())
    placed = set().union(*(members for _, members in LAYERS))
    assert set(units) - placed == set(), "add the new module/package to LAYERS here and in ARCHITECTURE.md"


def test_architecture_md_lists_the_same_layers():
    """The newcomer's page and the checked list cannot drift apart."""
    rows = [line for line in (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith("| layer")]
    assert [row.split("|")[1].strip() for row in rows] == [name for name, _ in LAYERS]
    for row, (_, members) in zip(rows, LAYERS):
        named = {unit.strip("/").removesuffix(".py") for unit in re.findall(r"`([\w/.]+)`", row.split("|")[2])}
        assert {"__init__" if unit == "edgekit" else unit for unit in members} <= named, row


def test_no_import_cycles_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycles_between_packages():
    units = unit_graph(import_graph())
    found = cycles(units)
    details = [edge for cycle in found for a in cycle for b in cycle for edge in units[a].get(b, [])]
    assert found == [], details


def test_no_import_runs_up_a_layer():
    assert upward_imports(unit_graph(import_graph())) == []


def test_the_detectors_catch_a_cycle_and_an_upward_import():
    """A made-up graph with one of each: the checks above are not vacuous."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    made_up = {"artifacts": {"profiling": ["edgekit.artifacts -> edgekit.profiling"]}, "profiling": {}}
    assert upward_imports(made_up) == ["edgekit.artifacts -> edgekit.profiling  (records imports profiling)"]


def _api_functions_with_var_keywords() -> list[str]:
    tree = ast.parse((PACKAGE / "api.py").read_text(encoding="utf-8"))
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.args.kwarg is not None]


def test_api_functions_have_explicit_keywords():
    assert _api_functions_with_var_keywords() == []
