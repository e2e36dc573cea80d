"""Stats read rollups; these must always equal the answers computed from `events` directly."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.stats.query import StatsQuery
from analytics.stats.rollups import site_stats
from analytics.store.events import merge, prepare
from tests.helpers.databases import migrated_before

# Reference answers straight from events, as the original service computed them (with its defects fixed).
REFERENCE_TOTALS_SQL = """
SELECT count(*) AS views, count(DISTINCT user_id) AS users
FROM events
WHERE site_id = $1 AND event_type = 'page_view'
  AND ($2::date IS NULL OR ("timestamp" AT TIME ZONE 'UTC')::date = $2)
"""
REFERENCE_TOP_PATHS_SQL = """
SELECT path, count(*) AS views
FROM events
WHERE site_id = $1 AND event_type = 'page_view' AND path IS NOT NULL
  AND ($2::date IS NULL OR ("timestamp" AT TIME ZONE 'UTC')::date = $2)
GROUP BY path
ORDER BY views DESC, path COLLATE "C"
LIMIT 3
"""

MIDNIGHT = datetime(2025, 11, 12, tzinfo=UTC)
DAYS = [date(2025, 11, 11), date(2025, 11, 12), date(2025, 11, 13)]
example_numbers = itertools.count()

events = st.tuples(
    st.sampled_from(["a", "b"]),
    st.sampled_from(["page_view", "page_view", "page_view", "click"]),
    st.sampled_from([None, "/", "/a", "/b", "/B", "/é"]),
    st.sampled_from([None, "u1", "u2", "u3", "u4"]),
    # Around two midnights, so days split where they should; few distinct instants, so duplicates are common.
    st.sampled_from([-2, -1, 0, 1, 86_399, 86_400, 86_401]).map(lambda s: MIDNIGHT + timedelta(seconds=s)),
)


async def reference(db: asyncpg.Connection, site_id: str, day: date | None) -> tuple[int, int, list[Any]] | None:
    totals = await db.fetchrow(REFERENCE_TOTALS_SQL, site_id, day)
    if totals["views"] == 0:
        return None
    top = await db.fetch(REFERENCE_TOP_PATHS_SQL, site_id, day)
    return totals["views"], totals["users"], [(row["path"], row["views"]) for row in top]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.lists(events, min_size=1, max_size=25), min_size=1, max_size=4),
    redelivered=st.lists(st.integers(min_value=0, max_value=3), max_size=2),
)
async def test_rollups_equal_answers_from_events(
    db: asyncpg.Connection, pool: asyncpg.Pool, batches: list[list[Any]], redelivered: list[int]
) -> None:
    prefix = f"x{next(example_numbers)}-"
    await prepare(db)
    deliveries = batches + [batches[index] for index in redelivered if index < len(batches)]
    for batch in deliveries:
        records: list[Event] = [
            Event(prefix + site, kind, path, user, epoch_microseconds(moment), 0)
            for site, kind, path, user, moment in batch
        ]
        await merge(db, records)
    for site, day in itertools.product(["a", "b"], [None, *DAYS]):
        expected = await reference(db, prefix + site, day)
        stats = await site_stats(pool, StatsQuery(site_id=prefix + site, day=day))
        actual = (
            None
            if stats is None
            else (
                stats.total_views,
                stats.unique_users,
                [(path.path, path.views) for path in stats.top_paths],
            )
        )
        assert actual == expected, (site, day)


async def test_migration_backfills_rollups_from_existing_events(postgres_url: str) -> None:
    """A database that has events from before the rollups gets them counted when 0002 is applied."""
    async with migrated_before(postgres_url, "0002", "backfill") as database:
        connection = await asyncpg.connect(database.url)
        await connection.execute(
            """INSERT INTO events (site_id, event_type, path, user_id, "timestamp") VALUES
               ('s', 'page_view', '/a', 'u1', '2025-11-12T10:00:00Z'),
               ('s', 'page_view', '/a', NULL, '2025-11-12T11:00:00Z'),
               ('s', 'page_view', NULL, 'u2', '2025-11-13T10:00:00Z'),
               ('s', 'click', '/b', 'u3', '2025-11-13T10:00:00Z')"""
        )
        database.apply_the_rest()
        totals = await connection.fetch("SELECT day, views, users FROM daily_totals ORDER BY day")
        assert [tuple(row) for row in totals] == [(date(2025, 11, 12), 2, 1), (date(2025, 11, 13), 1, 1)]
        assert tuple(await connection.fetchrow("SELECT views, users FROM site_totals")) == (3, 2)
        assert tuple(await connection.fetchrow("SELECT path, views FROM site_path_views")) == ("/a", 2)
        # The keys the migration computed for old rows are the keys the writer computes: re-delivery stores nothing.
        await prepare(connection)
        redelivered: list[Event] = [
            Event("s", "page_view", "/a", "u1", epoch_microseconds(datetime(2025, 11, 12, 10, tzinfo=UTC)), 0),
            Event("s", "page_view", "/a", None, epoch_microseconds(datetime(2025, 11, 12, 11, tzinfo=UTC)), 0),
            Event("s", "page_view", None, "u2", epoch_microseconds(datetime(2025, 11, 13, 10, tzinfo=UTC)), 0),
            Event("s", "click", "/b", "u3", epoch_microseconds(datetime(2025, 11, 13, 10, tzinfo=UTC)), 0),
        ]
        assert await merge(connection, redelivered) == 0
        assert await connection.fetchval("SELECT count(*) FROM events") == 4
        await connection.close()
