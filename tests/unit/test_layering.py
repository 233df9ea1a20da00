"""The house rules of docs/architecture.md, read from the source: which package and which room may import what.

Every import statement counts, the lazy ones inside functions and the ones
under TYPE_CHECKING too: a rule that only holds at start-up is not a rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("schemas", "policies", "producers", "executors", "streams")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(package: str) -> Iterator[Import]:
    return iter(_IMPORTS[package])


def _scan(package: str) -> Iterator[Import]:
    for path in sorted((ROOT / package).rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield Import(module, node.module, node.lineno)
                for alias in node.names:  # "from streams import settings" names a module too
                    yield Import(module, f"{node.module}.{alias.name}", node.lineno)


#: Parsed while the module is collected: CPython 3.11 before 3.11.8 can fail ast.parse with "AST constructor
#: recursion depth mismatch" once any earlier test in the process has hit a RecursionError (gh-106905).
_IMPORTS: dict[str, list[Import]] = {package: list(_scan(package)) for package in OURS}


def _in(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


#: schemas <- policies, producers, executors <- streams (STYLE.md, docs/architecture.md).
PACKAGE_MAY_IMPORT = {
    "schemas": ("schemas",),
    "policies": ("schemas", "policies"),
    "producers": ("schemas", "producers"),
    "executors": ("schemas", "executors"),
    "streams": OURS,
}

#: Modules every room of streams may import: the error root of the package.
SHARED = ("streams.errors",)
#: Inside streams: each room and the rooms it may use. cli and commands sit on top and may use them all.
ROOM_MAY_IMPORT = {
    "streams.errors": (),
    "streams.settings": ("streams.settings_fields", "streams.settings_unknown"),
    # The settings model's walker, its unknown-key check and the generated reference: the settings room's helpers.
    "streams.settings_fields": (),
    "streams.settings_unknown": ("streams.settings_fields",),
    "streams.settings_reference": ("streams.settings_fields", "streams.settings"),
    "streams.stages": ("streams.stages",),
    "streams.notify": ("streams.notify", "streams.stages", "streams.settings"),
    "streams.broker": ("streams.broker",),
    "streams.wiring": ("streams.wiring", "streams.stages", "streams.notify", "streams.settings", "streams.broker",
                       "streams.kb"),
    "streams.worker": ("streams.worker", "streams.stages", "streams.notify", "streams.wiring", "streams.settings"),
    "streams.api": ("streams.api", "streams.stages", "streams.notify", "streams.wiring", "streams.settings"),
    "streams.executor": ("streams.executor", "streams.wiring", "streams.settings"),
    "streams.ops": ("streams.ops", "streams.wiring", "streams.stages", "streams.settings", "streams.broker",
                    "streams.settings_fields", "streams.settings_unknown"),
    "streams.kb": ("streams.kb", "streams.settings"),
}

#: Engines, frameworks and clients, each in the one room that is about it.
LIBRARY_ROOMS = {
    "faust": ("streams.worker",),
    "mode": ("streams.worker",),
    "aiokafka": ("streams.worker",),
    "fastapi": ("streams.api",),
    "starlette": ("streams.api",),
    "uvicorn": ("streams.api",),
}
#: Rooms that hold per-record logic or configuration and must not talk to Kafka themselves.
NO_KAFKA_CLIENT = ("streams.settings", "streams.stages", "streams.notify")


@pytest.mark.parametrize("package", sorted(PACKAGE_MAY_IMPORT))
def test_packages_import_only_downwards(package: str) -> None:
    allowed = PACKAGE_MAY_IMPORT[package]
    wrong = [f"{i.module}:{i.line} imports {i.target}" for i in _imports(package)
             if _in(i.target, *OURS) and not _in(i.target, *allowed)]
    assert wrong == [], f"{package} may import only {allowed}:\n" + "\n".join(wrong)


def test_each_room_of_streams_imports_only_the_rooms_below_it() -> None:
    wrong = []
    for imp in _imports("streams"):
        room = next((r for r in ROOM_MAY_IMPORT if _in(imp.module, r)), None)
        if room is None or not _in(imp.target, "streams") or imp.target == "streams":
            continue
        if not _in(imp.target, *ROOM_MAY_IMPORT[room], *SHARED):
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target}")
    assert wrong == [], "\n".join(wrong)


def test_frameworks_and_clients_stay_in_their_room() -> None:
    wrong = []
    for package in OURS:
        for imp in _imports(package):
            rooms = next((r for lib, r in LIBRARY_ROOMS.items() if _in(imp.target, lib)), None)
            if rooms is not None and not _in(imp.module, *rooms):
                wrong.append(f"{imp.module}:{imp.line} imports {imp.target} (only {', '.join(rooms)} may)")
            if _in(imp.target, "confluent_kafka") and _in(imp.module, *NO_KAFKA_CLIENT):
                wrong.append(f"{imp.module}:{imp.line} imports {imp.target}")
    assert wrong == [], "\n".join(wrong)


def test_the_rules_see_lazy_imports() -> None:
    """A guard for the guard: the scanner finds an import inside a function body."""
    found = [i for i in _imports("streams") if i.module == "streams.cli" and i.target == "importlib"]
    lazy = [i for i in _imports("streams") if i.module == "streams.commands.processes"
            and i.target == "streams.worker.process"]
    assert found and lazy
