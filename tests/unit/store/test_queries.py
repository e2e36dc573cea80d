"""Named SQL: `-- name: <name>` starts a query; what the code asks for is exactly what the files hold."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

from analytics.store import queries
from analytics.store.queries import ERASURE, STATS, WRITER, parse

PACKAGE = Path(queries.__file__).resolve().parents[1]


def test_names_and_bodies() -> None:
    text = "-- name: first\nSELECT 1;\n\n-- name: second\n-- a comment stays in its query\nSELECT 2\nFROM t;\n\n\n"
    assert dict(parse(text)) == {
        "first": "SELECT 1;\n",
        "second": "-- a comment stays in its query\nSELECT 2\nFROM t;\n",
    }


def test_the_header_before_the_first_name_is_not_a_query() -> None:
    text = "-- What this file is for.\n-- SELECT 0; in the header is prose, not a query\n\n-- name: only\nSELECT 1;\n"
    assert dict(parse(text)) == {"only": "SELECT 1;\n"}


def test_a_file_without_names_has_no_queries() -> None:
    assert dict(parse("-- just a header\nSELECT 1;\n")) == {}


def test_a_name_must_start_its_line() -> None:
    text = "-- name: a\nSELECT '-- name: b\n';\n"
    assert list(parse(text)) == ["a"]


def test_a_name_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="used twice"):
        parse("-- name: same\nSELECT 1;\n-- name: other\nSELECT 2;\n-- name: same\nSELECT 3;\n")


def test_the_queries_cannot_be_changed_at_run_time() -> None:
    parsed = parse("-- name: a\nSELECT 1;\n")
    with pytest.raises(TypeError):
        parsed["a"] = "DROP TABLE events;"  # type: ignore[index]


def names_used(mapping: str) -> set[str]:
    """Every `queries.<mapping>["name"]` (or a bare `<mapping>["name"]`) in the package's source."""
    used: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                target = node.value
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
                if name == mapping and isinstance(node.slice.value, str):
                    used.add(node.slice.value)
    return used


@pytest.mark.parametrize(
    ("mapping", "shipped", "expected"),
    [
        ("WRITER", WRITER, {"create_staging", "merge", "rebuild_visits", "count_cells", "inserted_count"}),
        (
            "ERASURE",
            ERASURE,
            {
                "lock_out_writers",
                "delete_user_events",
                "removed_counts",
                "visits_of_removed",
                "uncount_user_events",
                "uncount_cells",
                "forget_user_in_cells",
                "lock_out_distinct_keepers",
                "forget_distincts",
                "erase_site",
            },
        ),
        ("STATS", STATS, {"day_totals", "day_top_paths", "all_time_totals", "all_time_top_paths"}),
    ],
)
def test_the_shipped_files_hold_exactly_the_queries_the_code_uses(
    mapping: str, shipped: Mapping[str, str], expected: set[str]
) -> None:
    assert set(shipped) == expected
    assert names_used(mapping) == expected, "a query the code asks for is missing, or one in the file is unused"
    assert all(body.strip() and body.endswith("\n") for body in shipped.values())


@pytest.mark.parametrize("line", ["-- name: b ", "-- name: day-totals", "-- name:"])
def test_a_line_that_looks_like_a_name_but_is_not_one_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="not a query name"):
        parse(f"-- name: a\nSELECT 1;\n{line}\nSELECT 2;\n")
