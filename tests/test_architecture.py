"""The layout's promise: no import cycles between fleetmarl's modules (not even through type-only
imports), and storage never parses argv."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, *, type_only: bool = False) -> list[ast.AST]:
    """Import statements that run (anywhere, functions included), and with ``type_only`` also the
    ``if TYPE_CHECKING:`` ones."""
    found: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        if (not type_only and isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                and node.test.id == "TYPE_CHECKING"):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(*, type_only: bool = False) -> dict[str, set[str]]:
    """Module -> the fleetmarl modules it imports (with ``type_only``, for annotations too)."""
    paths = {_module_name(p): p for p in (SRC / "fleetmarl").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8")), type_only=type_only):
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


def _assert_acyclic(graph: dict[str, set[str]], what: str) -> None:
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"{what}: {' -> '.join(exc.args[1])}") from None


def test_no_import_cycles() -> None:
    _assert_acyclic(import_graph(), "import cycle")


def test_no_import_cycles_through_type_only_imports() -> None:
    """An ``if TYPE_CHECKING:`` import that closes a circle still ties two modules into one idea (as
    envs/observation.py and envs/fleet_core.py were): name what both need in a module of its own."""
    _assert_acyclic(import_graph(type_only=True), "import cycle (counting TYPE_CHECKING imports)")


def test_the_fleet_core_is_the_state_observations_are_built_from() -> None:
    """observation.py is typed against the FleetState protocol, not FleetCore: FleetCore must keep
    every attribute the protocol names."""
    from fleetmarl.config import Config
    from fleetmarl.envs.fleet_core import FleetCore
    from fleetmarl.envs.fleet_state import FleetState

    core = FleetCore(Config(), 1)
    names = [name for name in vars(FleetState) if not name.startswith("_")]
    names += list(FleetState.__annotations__)
    missing = sorted(name for name in set(names) if not hasattr(core, name))
    assert not missing, f"FleetCore lacks what FleetState promises: {missing}"


def test_storage_learner_and_env_do_not_parse_the_command_line() -> None:
    """argparse lives in cli/ only; the checkpoint, learner and env packages are libraries."""
    graph = import_graph()
    for folder in ("checkpoint", "learner", "envs"):
        for path in (SRC / "fleetmarl" / folder).rglob("*.py"):
            name = _module_name(path)
            assert not any(d.startswith("fleetmarl.cli") for d in graph[name]), name
            assert "import argparse" not in path.read_text(encoding="utf-8"), name
