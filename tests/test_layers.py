"""The package's import graph: every import (module level, inside functions, under TYPE_CHECKING)
points one way. No cycle between modules, none between top-level folders, and `models/` never
imports the layers above it (issue 22)."""

import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "storyagent"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from storyagent.x import y` names module x.y when y is one, else something in x.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("storyagent.") and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def folder(module: str) -> str:
    """`storyagent.tools.run` → `tools`; a top-level module is its own node (`storyagent.config` → `config`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "storyagent"


def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_top_level_folders():
    folders: dict[str, set[str]] = {}
    for source, targets in import_graph().items():
        folders.setdefault(folder(source), set()).update(folder(t) for t in targets if folder(t) != folder(source))
    assert cycles(folders) == []


@pytest.mark.parametrize("lower, upper", [("models", ("tools", "agents", "cli", "commands", "studio", "eval")),
                                          ("tools", ("agents", "cli", "commands", "studio")),
                                          ("agents", ("cli", "commands", "studio"))])
def test_no_import_runs_back_up_a_layer(lower, upper):
    wrong = {(s, t) for s, targets in import_graph().items() if folder(s) == lower
             for t in targets if folder(t) in upper}
    assert not wrong


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "storyagent.tools.run" in graph["storyagent.tools.backends.animatic"]  # `from storyagent.tools.run import ...`
    assert "storyagent.manifest" in graph["storyagent.workspace"]
