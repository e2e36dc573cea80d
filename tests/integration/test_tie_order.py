"""Top paths that tie on views: the stats queries sort by an indexed path prefix before the whole path
(migrations/0007.tie_order.sql); the order must stay the contract's (views DESC, then path by code point), and a
site-day where every path ties must not be sorted whole."""

from __future__ import annotations

import itertools
import json
import random
import re
from datetime import UTC, date, datetime
from typing import Any, Final

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.events.contract import PATH_MAX, SITE_ID_MAX, epoch_microseconds
from analytics.events.record import Event
from analytics.store.events import merge, prepare
from analytics.store.queries import STATS

PREFIX: Final = 64  # characters of the path in the index; test_the_index_holds_the_prefix_these_tests_assume
DAY: Final = date(2025, 11, 12)
TIED: Final = 20_000

# What 0004's index served: every path of the site-day's top view count went through the incremental sort.
OLD_DAY_TOP_PATHS_SQL: Final = """
SELECT path, views FROM daily_path_views
WHERE site_id = $1 AND day = $2
ORDER BY views DESC, path
LIMIT 3
"""
DELETE_DAY_SQL: Final = "DELETE FROM daily_path_views WHERE site_id = $1 AND day = $2 AND path = ANY($3::text[])"
DELETE_ALL_TIME_SQL: Final = "DELETE FROM site_path_views WHERE site_id = $1 AND path = ANY($2::text[])"

example_numbers = itertools.count()

# Characters where UTF-8's encoded length changes (and so where byte order could part from code-point order if UTF-8
# did not keep it), ASCII neighbours, and anything else but NUL (which text cannot hold) and lone surrogates.
BOUNDARY_CHARACTERS: Final = "/aAb\x7f\x80é\u07ff\u0800\ufffd\uffff\U00010000😀\U0010ffff"
characters = st.sampled_from(BOUNDARY_CHARACTERS) | st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
# Starts shared by many paths: shorter than the prefix, exactly it, longer than it, in one- to four-byte characters,
# so that paths tie on the whole prefix and differ after it, or differ just inside it.
shared_starts = st.sampled_from(
    [
        "",
        "/",
        "/" + "a" * (PREFIX - 2),
        "/" + "a" * (PREFIX - 1),
        "/" + "a" * PREFIX,
        "/" + "a" * (PREFIX - 2) + "é",
        "é" * PREFIX,
        "é" * (PREFIX - 1) + "a",
        "/" + "😀" * (PREFIX + 3),
        "/" + "\uffff" * (PREFIX - 1) + "\U00010000",
    ]
)
paths = st.builds(lambda start, rest: start + rest, shared_starts, st.text(characters, max_size=4))
path_views = st.dictionaries(paths, st.integers(min_value=1, max_value=3), min_size=1, max_size=30)


def brute_force_order(views: dict[str, int]) -> list[tuple[str, int]]:
    """The contract's order: views descending, then the path's UTF-8 bytes (= its code points, = COLLATE "C")."""
    return sorted(views.items(), key=lambda item: (-item[1], item[0].encode("utf-8")))


async def store(db: asyncpg.Connection, site_id: str, views: dict[str, int]) -> None:
    """Rollup rows as the writer keeps them, for one site-day and the site's all-time."""
    paths, counts = list(views), list(views.values())
    await db.execute(
        """INSERT INTO daily_path_views (site_id, day, path_md5, path, views)
           SELECT $1, $2, md5(path)::uuid, path, views FROM unnest($3::text[], $4::bigint[]) AS rows(path, views)""",
        site_id,
        DAY,
        paths,
        counts,
    )
    await db.execute(
        """INSERT INTO site_path_views (site_id, path_md5, path, views)
           SELECT $1, md5(path)::uuid, path, views FROM unnest($2::text[], $3::bigint[]) AS rows(path, views)""",
        site_id,
        paths,
        counts,
    )


async def test_the_index_holds_the_prefix_these_tests_assume(db: asyncpg.Connection) -> None:
    """The generated paths tie and part around PREFIX characters: they prove the order only for that prefix."""
    definition = await db.fetchval("SELECT pg_get_indexdef('daily_path_views_top'::regclass)")
    assert re.search(rf"\(site_id, day, views DESC, \"left\"\(path, {PREFIX}\)\)", definition), definition
    assert f"left(path, {PREFIX}), path" in STATS["day_top_paths"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(views=path_views)
async def test_top_paths_come_in_the_brute_force_order(db: asyncpg.Connection, views: dict[str, int]) -> None:
    """The whole order, three at a time: the top three, then the top three of what is left once they are deleted.
    Sequential scans off, so the rows come through the indexes however few there are."""
    site_id = f"site-{next(example_numbers)}"
    await store(db, site_id, views)
    expected = brute_force_order(views)
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        for kind, query, arguments, delete, where in (
            ("day", STATS["day_top_paths"], (site_id, DAY), DELETE_DAY_SQL, (site_id, DAY)),
            ("all-time", STATS["all_time_top_paths"], (site_id,), DELETE_ALL_TIME_SQL, (site_id,)),
        ):
            remaining = expected
            while remaining:
                top = [(row["path"], row["views"]) for row in await db.fetch(query, *arguments)]
                assert top == remaining[:3], kind
                await db.execute(delete, *where, [path for path, _ in top])
                remaining = remaining[3:]
            assert await db.fetch(query, *arguments) == [], kind


def rows_read(plan: dict[str, Any]) -> int:
    """Rows that the plan's scans produced (each leaf's actual rows times its loops)."""
    children = plan.get("Plans", [])
    if not children:
        return int(plan["Actual Rows"] * plan["Actual Loops"])
    return sum(rows_read(child) for child in children)


def index_scans(plan: dict[str, Any]) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= index_scans(child)
    return found


async def explained(db: asyncpg.Connection, sql: str) -> dict[str, Any]:
    raw = await db.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", "tied", DAY)
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_site_day_of_tied_paths_is_not_sorted_whole(db: asyncpg.Connection, plan_cache_mode: str) -> None:
    """TIED paths of one view each on one site-day, among other sites' days: the day query reads a few index
    entries, where 0004's order (reference OLD_DAY_TOP_PATHS_SQL) read every tied path. Both plans the server may
    choose for the prepared statement: the first executions' custom one and the generic one it may switch to."""
    await db.execute(
        """INSERT INTO daily_path_views (site_id, day, path_md5, path, views)
           SELECT 'tied', $1, md5(path)::uuid, path, 1
           FROM (SELECT '/' || md5(n::text) AS path FROM generate_series(1, $2) AS n) AS paths""",
        DAY,
        TIED,
    )
    await db.execute(
        """INSERT INTO daily_path_views (site_id, day, path_md5, path, views)
           SELECT 'site-' || n % 50, $1::date - n / 50 % 30, md5(n::text)::uuid, '/page-' || n, 1 + n % 97
           FROM generate_series(1, $2) AS n""",
        DAY,
        TIED,
    )
    await db.execute("ANALYZE daily_path_views")
    await db.execute(f"SET plan_cache_mode = {plan_cache_mode}")

    old = await explained(db, OLD_DAY_TOP_PATHS_SQL)
    assert rows_read(old) >= TIED
    new = await explained(db, STATS["day_top_paths"])
    assert index_scans(new) == {"daily_path_views_top"}
    assert rows_read(new) <= 100, json.dumps(new, indent=1)
    top = await db.fetch(STATS["day_top_paths"], "tied", DAY)
    assert [row["path"] for row in top] == sorted(
        await db.fetchval("SELECT array_agg(path) FROM daily_path_views WHERE site_id = 'tied'")
    )[:3]


async def test_the_longest_valid_event_in_incompressible_multibyte_text_is_still_written(
    db: asyncpg.Connection,
) -> None:
    """The index holds the site id and the path's prefix: at their maximum lengths in four-byte characters that
    cannot be compressed, the row must still fit btree's limit, or a valid event would be dead-lettered."""
    draw = random.Random(7)

    def four_byte_text(length: int) -> str:
        return "".join(chr(draw.randrange(0x10000, 0x110000)) for _ in range(length))

    site_id, path = four_byte_text(SITE_ID_MAX), four_byte_text(PATH_MAX)
    await prepare(db)
    moment = epoch_microseconds(datetime(2025, 11, 12, 10, tzinfo=UTC))
    assert await merge(db, [Event(site_id, "page_view", path, None, moment)]) == 1
    assert [tuple(row) for row in await db.fetch(STATS["day_top_paths"], site_id, DAY)] == [(path, 1)]
    assert [tuple(row) for row in await db.fetch(STATS["all_time_top_paths"], site_id)] == [(path, 1)]
