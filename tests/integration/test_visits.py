"""The visits the writer keeps always equal a sessionization of the stored events, whatever order batches arrive in,
when two writers merge overlapping batches at once, and when a batch is delivered again; the migration builds them
for events stored before it."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.stats import reports
from analytics.stats.params import parse_report_query
from analytics.store.events import merge, prepare
from tests.helpers.databases import migrated_before

START = datetime(2026, 3, 29, 0, tzinfo=UTC)
GAP = timedelta(minutes=30)
example_numbers = itertools.count()

# (visitor, minute, type, path): minutes on a grid that puts gaps just under, at and over 30 minutes.
moments = st.tuples(
    st.sampled_from(["v1", "v2", "v3"]),
    st.sampled_from([0, 5, 29, 30, 31, 35, 60, 61, 95, 125, 200]),
    st.sampled_from(["page_view", "page_view", "click"]),
    st.sampled_from([None, "/", "/a", "/b"]),
)


def record(site: str, number: int, visitor: str, minute: int, kind: str, path: str | None) -> Event:
    # Distinct microseconds: two events of one visitor never share an instant, so visits are well defined.
    at = START + timedelta(minutes=minute, microseconds=number)
    return Event(site, kind, path, None, epoch_microseconds(at), 0, event_id=f"e{number}", visitor=visitor)


def sessions(rows: list[asyncpg.Record]) -> set[tuple[Any, ...]]:
    """(visitor, start, end, page views, events, entry page, exit page) of every visit, in plain Python."""
    visits: list[list[asyncpg.Record]] = []
    for row in sorted(rows, key=lambda row: (row["visitor"], row["timestamp"])):
        previous = visits[-1][-1] if visits else None
        if previous is None or previous["visitor"] != row["visitor"] or row["timestamp"] - previous["timestamp"] > GAP:
            visits.append([])
        visits[-1].append(row)
    found = set()
    for visit in visits:
        pages = [row["path"] for row in visit if row["event_type"] == "page_view"]
        found.add(
            (
                visit[0]["visitor"],
                visit[0]["timestamp"],
                visit[-1]["timestamp"],
                len(pages),
                len(visit),
                pages[0] if pages else None,
                pages[-1] if pages else None,
            )
        )
    return found


async def stored_visits(connection: asyncpg.Connection, site: str) -> set[tuple[Any, ...]]:
    rows = await connection.fetch(
        """SELECT visitor, started_at, ended_at, pageviews, events, entry_page, exit_page
           FROM visits WHERE site_id = $1""",
        site,
    )
    return {tuple(row) for row in rows}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.lists(moments, min_size=1, max_size=8), min_size=2, max_size=6),
    redelivered=st.lists(st.integers(0, 5), max_size=2),
)
async def test_two_writers_in_any_order_keep_visits_equal_to_a_recomputation(
    database_url: str, batches: list[list[tuple[str, int, str, str | None]]], redelivered: list[int]
) -> None:
    site = f"visits-{next(example_numbers)}"
    numbered = itertools.count()
    records = [[record(site, next(numbered), *moment) for moment in batch] for batch in batches]
    deliveries = records + [records[index] for index in redelivered if index < len(records)]
    lanes = [await asyncpg.connect(database_url) for _ in range(2)]
    try:
        for lane in lanes:
            await prepare(lane)

        async def deliver(lane: asyncpg.Connection, mine: list[list[Event]]) -> None:
            for batch in mine:
                await merge(lane, batch)

        # Two writers at once, each with every other batch: overlapping visitors, out of time order.
        await asyncio.gather(deliver(lanes[0], deliveries[0::2]), deliver(lanes[1], deliveries[1::2]))
        rows = await lanes[0].fetch(
            'SELECT visitor, "timestamp", event_type, path FROM events WHERE site_id = $1', site
        )
        assert len(rows) == sum(len(batch) for batch in records)
        assert await stored_visits(lanes[0], site) == sessions(list(rows))
    finally:
        for lane in lanes:
            await lane.close()


async def test_a_redelivered_batch_changes_no_visit(db: asyncpg.Connection) -> None:
    await prepare(db)
    batch = [record("redelivered", number, "v1", minute, "page_view", "/a") for number, minute in enumerate([0, 10])]
    await merge(db, batch)
    before = await db.fetch("SELECT *, xmin::text AS version FROM visits WHERE site_id = 'redelivered'")
    assert await merge(db, batch) == 0
    after = await db.fetch("SELECT *, xmin::text AS version FROM visits WHERE site_id = 'redelivered'")
    assert [dict(row) for row in after] == [dict(row) for row in before]
    assert len(after) == 1


async def test_a_late_event_joins_two_visits_into_one(db: asyncpg.Connection) -> None:
    await prepare(db)
    await merge(db, [record("joined", 1, "v1", 0, "page_view", "/a"), record("joined", 2, "v1", 50, "click", None)])
    assert len(await stored_visits(db, "joined")) == 2
    await merge(db, [record("joined", 3, "v1", 25, "page_view", "/b")])
    [visit] = await stored_visits(db, "joined")
    assert visit[3:] == (2, 3, "/a", "/b")


async def test_an_event_of_the_period_finds_its_visit_begun_hours_before_it(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    """The join of events to their visits reads visits from the site's longest visit before the period
    (migrations/0011.visit_bounds.sql): a three-hour visit from the evening before still gives its source."""
    evening = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
    visit = [
        Event(
            "long", "page_view", f"/p{n}", None, epoch_microseconds(evening + timedelta(minutes=25 * n)), 0,
            event_id=f"long-{n}", visitor="v", source="google.com" if n == 0 else None,
        )
        for n in range(8)
    ]  # fmt: skip
    await prepare(db)
    await merge(db, visit)
    assert await db.fetchval("SELECT longest FROM site_visit_bounds WHERE site_id = 'long'") == timedelta(minutes=175)
    params = {"site_id": "long", "period": "day", "date": "2026-03-29", "property": "source", "metrics": "pageviews"}
    answer = await reports.breakdown(pool, parse_report_query("breakdown", params))
    assert answer.results == [{"source": "google.com", "pageviews": 3}]  # 00:05, 00:30, 00:55 of the visit


async def test_the_migration_gives_stored_events_their_visitors_and_visits(postgres_url: str) -> None:
    async with migrated_before(postgres_url, "0008", "visits") as database:
        connection = await asyncpg.connect(database.url)
        try:
            await connection.execute(
                """INSERT INTO events (event_key, site_id, event_type, path, user_id, visitor, "timestamp")
                   VALUES (md5('1')::uuid, 's', 'page_view', '/a', 'u1', NULL, '2025-11-12T10:00:00Z'),
                          (md5('2')::uuid, 's', 'page_view', '/b', 'u1', NULL, '2025-11-12T10:20:00Z'),
                          (md5('3')::uuid, 's', 'page_view', '/c', 'u1', NULL, '2025-11-12T11:00:00Z'),
                          (md5('4')::uuid, 's', 'click', NULL, NULL, 'f00d', '2025-11-12T10:00:00Z'),
                          (md5('5')::uuid, 's', 'page_view', '/old', NULL, NULL, '2025-11-12T10:00:00Z')"""
            )
            database.apply_the_rest()
            visitors = await connection.fetch("SELECT path, visitor FROM events")
            assert {tuple(row) for row in visitors} == {
                ("/a", "u1"),
                ("/b", "u1"),
                ("/c", "u1"),
                (None, "f00d"),
                ("/old", None),
            }
            at = datetime(2025, 11, 12, 10, tzinfo=UTC)
            assert await stored_visits(connection, "s") == {
                ("u1", at, at + timedelta(minutes=20), 2, 2, "/a", "/b"),
                ("u1", at + timedelta(hours=1), at + timedelta(hours=1), 1, 1, "/c", "/c"),
                ("f00d", at, at, 0, 1, None, None),
            }
        finally:
            await connection.close()
