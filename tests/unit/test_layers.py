"""The layers depend down only: no import cycle among kafkalab's modules and the views.

Every import counts, the ones inside functions too (a lazy import is still a dependency: it only
moves the moment it runs). A cycle is printed module by module, with the line of each link, so
the link that points up can be found and moved (docs/architecture.md says where things belong).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kafkalab", "widgets")


def module_files() -> dict[str, Path]:
    """Every module of the checked packages by dotted name (a package by its own name)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, package: str, level: int) -> str:
    if not level:
        return name
    base = package.split(".")[: len(package.split(".")) - level + 1]
    return ".".join([*base, name] if name else base)


def imports_of(module: str, path: Path, modules: set[str]) -> list[tuple[str, int]]:
    """The checked modules that `module` imports, each with the line of the import. An import
    of a package counts as one of its __init__; `from pkg import sub` as one of pkg.sub."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", package, node.level)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # kafkalab.x.Name -> kafkalab.x
                target = target.rpartition(".")[0]
            if target and target != module:
                found.append((target, node.lineno))
    return found


def import_graph() -> dict[str, dict[str, int]]:
    files = module_files()
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges = graph.setdefault(module, {})
        for target, line in imports_of(module, path, set(files)):
            edges.setdefault(target, line)
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's components with more than one module: each holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth first)."""
    start, inside = component[0], set(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if w in inside and w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start]


def describe_cycles(graph: dict[str, dict[str, int]]) -> str:
    lines = []
    for component in strongly_connected(graph):
        cycle = shortest_cycle(graph, component)
        lines.append(f"{len(component)} modules in one import circle: {', '.join(component)}")
        lines.append("  a shortest cycle: " + " -> ".join(cycle))
        lines.append("  every link inside the circle:")
        for a in component:
            for b, line in sorted(graph[a].items()):
                if b in component:
                    lines.append(f"    {a} -> {b}  (line {line})")
    return "\n".join(lines)


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 100  # the walk found the packages
    report = describe_cycles(graph)
    print(report or "no import cycle")
    assert not report, "import cycles (move the link that points up):\n" + report


def test_the_checker_sees_a_cycle_through_a_function_level_import():
    graph = {"a": {"b": 3}, "b": {"c": 5}, "c": {"a": 12}, "d": {"a": 1}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_imports_inside_functions_and_relative_ones_are_found(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("import os\nfrom . import sibling\n\ndef f():\n    from kafkalab.cluster import Cluster\n")
    modules = {"pkg.mod", "pkg.sibling", "kafkalab.cluster"}
    assert sorted(imports_of("pkg.mod", source, modules)) == [("kafkalab.cluster", 5), ("pkg.sibling", 2)]
