"""The layout's promise: no import cycles between fleetmarl's modules, and storage never parses argv."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> list[ast.AST]:
    """Import statements that run (anywhere, functions included), but not ``if TYPE_CHECKING:`` ones."""
    found: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in (SRC / "fleetmarl").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            # a module importing its own package's __init__ (or an ancestor) is Python's normal order, not a cycle
            deps |= {t for t in targets if t in paths and t != name and not name.startswith(t + ".")}
        graph[name] = deps
    return graph


def test_no_import_cycles() -> None:
    try:
        list(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_storage_learner_and_env_do_not_parse_the_command_line() -> None:
    """argparse lives in cli/ only; the checkpoint, learner and env packages are libraries."""
    graph = import_graph()
    for folder in ("checkpoint", "learner", "envs"):
        for path in (SRC / "fleetmarl" / folder).rglob("*.py"):
            name = _module_name(path)
            assert not any(d.startswith("fleetmarl.cli") for d in graph[name]), name
            assert "import argparse" not in path.read_text(encoding="utf-8"), name
