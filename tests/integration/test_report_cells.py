"""The report cells (migrations/0012.report_cells.sql) that unfiltered v2 aggregates and time series read: that they
are read, in every zone of the oracle; that the writer keeps them a recount of the stored events and visits over
batches out of time order and re-deliveries, a re-delivered batch touching none; distinct counts past and below
10,000 in one bucket; and that the migration counts what was stored before it. The answers themselves are checked
against a brute force by test_reports_oracle.py, unfiltered ones through the cells."""

from __future__ import annotations

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
from analytics.store import queries
from analytics.store.connect import create_pool
from analytics.store.events import STAGING_COLUMNS, STAGING_TABLE, merge, prepare, staging_rows
from tests.helpers.databases import migrated_before
from tests.helpers.rollups import RECOUNTED, assert_rollups_recount_events
from tests.helpers.servers import Client
from tests.integration.test_reports_oracle import ZONES

START = datetime(2026, 10, 24, 22, tzinfo=UTC)  # Berlin leaves DST during the next day
CELLS = "SELECT xmin::text, * FROM report_cells ORDER BY site_id, cell"
example_numbers = itertools.count()


def event(site: str, visitor: str, minutes: float, kind: str = "page_view", user: str | None = None) -> Event:
    at = START + timedelta(minutes=minutes)
    return Event(site, kind, f"/{int(minutes) % 3}", user, epoch_microseconds(at), 0, visitor=visitor)


async def test_unfiltered_reports_read_the_cells_in_every_zone(client_with: Client, db: asyncpg.Connection) -> None:
    """Cells changed behind the writer's back change every unfiltered answer, and no filtered one: so the oracle's
    unfiltered checks go through the cells."""
    await prepare(db)
    await merge(db, [event("s", f"v{n}", 37 * n, user=f"u{n % 2}") for n in range(40)])
    requests: list[tuple[str, dict[str, str]]] = []
    for zone in ZONES:
        custom = {"site_id": "s", "period": "custom", "from": "2026-10-23", "to": "2026-10-27", "timezone": zone}
        everything = {**custom, "metrics": "pageviews,visitors,users,visits,events"}
        requests.append(("aggregate", everything))
        requests.append(("timeseries", {**everything, "interval": "hour", "from": "2026-10-25", "to": "2026-10-25"}))
        requests.append(("timeseries", {**everything, "interval": "week"}))
    async with client_with() as client:

        async def answers(filters: str) -> list[Any]:
            found = []
            for kind, params in requests:
                response = await client.get(f"/api/v2/stats/{kind}", params={**params, "filters": filters})
                assert response.status_code == 200, response.text
                found.append(response.json()["data"]["results"])
            return found

        unfiltered, filtered = await answers(""), await answers("event_type!=(none)")
        assert unfiltered == filtered  # the same events, counted from cells and from raw events
        await db.execute("UPDATE report_cells SET pageviews = pageviews + 1, visits = visits + 1, users = '{}'")
        changed = await answers("")
        for before, after in zip(unfiltered, changed, strict=True):
            assert before != after
        assert await answers("event_type!=(none)") == filtered


visits_drafts = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(["v1", "v2", "v3", "u1"]),
        st.sampled_from([0, 1, 14.9, 15, 29, 31, 44, 59.5, 60, 90, 95, 240, 1439]),
        st.sampled_from(["page_view", "page_view", "click"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(visits_drafts, min_size=1, max_size=4), redelivered=st.lists(st.integers(0, 3), max_size=3))
async def test_the_writer_keeps_the_cells_a_recount_and_a_redelivery_changes_none(
    db: asyncpg.Connection, batches: list[list[tuple[str, str, float, str]]], redelivered: list[int]
) -> None:
    """Late events extend, start and join visits across cells; each batch is followed by the re-delivery of an
    earlier one, which must leave every cell row untouched (not even rewritten with the same values)."""
    prefix = f"c{next(example_numbers)}-"
    await prepare(db)
    stored = [
        [
            event(prefix + site, visitor, minutes, kind, visitor if visitor.startswith("u") else None)
            for site, visitor, minutes, kind in batch
        ]
        for batch in batches
    ]
    for number, batch in enumerate(stored):
        await merge(db, batch)
        await assert_rollups_recount_events(db)
        for index in redelivered:
            if index <= number:
                before = await db.fetch(CELLS)
                assert await merge(db, stored[index]) == 0
                assert await db.fetch(CELLS) == before


async def _store_many(db: asyncpg.Connection, site: str, visitors: int) -> None:
    await prepare(db)
    events = [event(site, f"visitor-{n}", (n % 1000) / 100, user=f"user-{n}") for n in range(visitors)]
    for offset in range(0, len(events), 5000):
        await merge(db, events[offset : offset + 5000])


async def test_distinct_counts_in_one_bucket_are_exact_below_and_past_10000(
    client_with: Client, db: asyncpg.Connection
) -> None:
    """12,000 and 9,999 visitors (and users) in the ten minutes of one cell: counted exactly, both (the contract allows
    an estimate past 10,000; the cells' hash sets give the exact count at no extra cost), and never approximate."""
    await _store_many(db, "big", 12_000)
    await _store_many(db, "small", 9_999)
    async with client_with() as client:
        for site, count in (("big", 12_000), ("small", 9_999)):
            for kind, extra in (("aggregate", {}), ("timeseries", {"interval": "hour"})):
                params = {"site_id": site, "period": "day", "date": "2026-10-24", "metrics": "visitors,users", **extra}
                data = (await client.get(f"/api/v2/stats/{kind}", params=params)).json()["data"]
                results = data["results"]
                if kind == "timeseries":
                    (results,) = [bucket for bucket in results if bucket["visitors"]]
                    results = {name: {"value": results[name]} for name in ("visitors", "users")}
                assert results == {"visitors": {"value": count}, "users": {"value": count}}, (site, kind)
                assert data["meta"] == {"approximate": False}


async def test_the_migration_counts_what_was_stored_before_it(postgres_url: str) -> None:
    """Events and visits stored by the writer of the release before: after the migration the cells are a recount,
    and every unfiltered answer (from the cells) is what raw events give."""
    async with migrated_before(postgres_url, "0012", "cells") as database:
        connection = await asyncpg.connect(database.url)
        try:
            await prepare(connection)
            batches = [
                [event("s", f"v{n % 7}", 23 * n, user=f"u{n % 3}" if n % 2 else None) for n in range(0, 90, 2)],
                [event("s", f"v{n % 7}", 23 * n, "click") for n in range(1, 90, 2)],  # late: visits change
                [event("t", "w", 5)],
            ]
            for batch in batches:  # the writer's statements of that release: merge and visits, no cells
                async with connection.transaction():
                    rows = staging_rows(batch)
                    await connection.copy_records_to_table(STAGING_TABLE, records=rows, columns=STAGING_COLUMNS)
                    await connection.execute(queries.WRITER["merge"] + queries.WRITER["rebuild_visits"])
            database.apply_the_rest()
            kept, recounted = RECOUNTED["report_cells"]
            assert sorted(await connection.fetch(kept)) == sorted(await connection.fetch(recounted))
            assert await connection.fetchval("SELECT count(*) FROM report_cells") > 10
        finally:
            await connection.close()
        pool = await create_pool(database.url, 2)
        try:
            for zone, interval in itertools.product(ZONES, ("hour", "day")):
                params = {
                    "site_id": "s",
                    "period": "custom",
                    "from": "2026-10-24",
                    "to": "2026-10-26",
                    "timezone": zone,
                    "metrics": "pageviews,visitors,users,visits,bounce_rate,visit_duration,views_per_visit,events",
                    "interval": interval,
                }
                cells = await reports.timeseries(pool, parse_report_query("timeseries", params))
                raw_params = {**params, "filters": "event_type!=(none)"}
                raw = await reports.timeseries(pool, parse_report_query("timeseries", raw_params))
                assert cells.results == raw.results, (zone, interval)
                assert any(bucket["visits"] for bucket in cells.results)
        finally:
            await pool.close()
