"""The layout's rules, read from the source: driver exceptions stop at queue/ and store/; dependencies point one
way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "analytics"

# What each family may import from the project (besides itself and the shared bottom layer).
SHARED = {"analytics.errors", "analytics.config", "analytics.observability"}
ALLOWED = {
    "events": set(),
    "enrich": {"analytics.events"},
    "queue": {"analytics.events"},
    "store": {"analytics.events"},
    "stats": {"analytics.events", "analytics.store"},
    "writer": {"analytics.events", "analytics.queue", "analytics.store"},
    "web": {"analytics.events", "analytics.enrich", "analytics.queue", "analytics.stats", "analytics.store"},
    "observability": set(),
    "dev": set(),
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def family(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_driver_exceptions_stop_at_queue_and_store(path: Path) -> None:
    if family(path) in ("queue", "store"):
        return
    source = path.read_text()
    assert "redis.exceptions" not in imported(path)
    assert "RedisError" not in source
    assert "asyncpg.exceptions" not in imported(path)
    assert not [
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "asyncpg"
        and node.attr.endswith("Error")
    ]


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_dependencies_point_one_way(path: Path) -> None:
    own = family(path)
    if own not in ALLOWED:
        return  # the composition root, the CLI and the shared bottom layer
    allowed = ALLOWED[own] | SHARED | {f"analytics.{own}"}
    project = {name for name in imported(path) if name.startswith("analytics.")}
    strays = {name for name in project if not any(name == a or name.startswith(a + ".") for a in allowed)}
    assert not strays, f"{path.relative_to(PACKAGE)} imports {sorted(strays)}"
