"""A breakdown's kept distinct counts (migrations/0019.report_value_counts.sql): a breakdown over a range that is over
keeps the counts it made as unions of hashes; the next one over that range reads them while each value sums to the
events it did, counts a value again once a late event changes it, and keeps nothing for a range still running; an
erasure forgets them. Every answer equals a brute force over the events sent."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.stats.keeper import keep_past_days
from analytics.store.erasure import erase_user
from tests.helpers.servers import Client
from tests.integration.test_kept_values import bounds, breakdown, brute_breakdown, custom
from tests.integration.test_kept_weeks import kept_weeks
from tests.integration.test_report_distincts import store

SITE = "weekly"
FIRST, LAST = date(2026, 10, 5), date(2026, 10, 25)
NAMES = ("visitors", "users", "pageviews")
PARAMS = {**custom(SITE, FIRST, LAST), "property": "path", "metrics": ",".join(NAMES)}


async def kept_counts(db: asyncpg.Connection) -> dict[str | None, tuple[int, int | None, int | None]]:
    rows = await db.fetch(
        "SELECT value, events, visitors, users FROM report_value_counts WHERE site_id = $1 AND dimension = 'path' "
        "AND starts = $2 AND ends = $3",
        SITE,
        *bounds(FIRST, LAST, "UTC"),
    )
    return {row["value"]: (row["events"], row["visitors"], row["users"]) for row in rows}


async def test_a_breakdown_keeps_its_counts_and_the_next_reads_them_while_they_hold(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    events = await kept_weeks(db, pool)
    expected = brute_breakdown(events, SITE, *bounds(FIRST, LAST, "UTC"), "path", NAMES)
    async with client_with() as client:
        assert (await breakdown(client, PARAMS))["results"] == expected
        kept = await kept_counts(db)
        by_path = {row["path"]: row for row in expected}
        # Counted by unions (visitors come back on other days), and kept with the events each path summed to.
        assert kept
        assert set(kept) <= set(by_path)
        for path, (kept_events, visitors, users) in kept.items():
            assert kept_events == sum(e.path == path for e in events if FIRST <= _day(e) <= LAST)
            assert (visitors, users) == (by_path[path]["visitors"], by_path[path]["users"])
        # Changed behind the reports' back, a kept count is what the next breakdown answers: it is read.
        await db.execute("UPDATE report_value_counts SET visitors = visitors + 1000 WHERE value = '/B'")
        shown = {row["path"]: row["visitors"] for row in (await breakdown(client, PARAMS))["results"]}
        assert shown["/B"] == by_path["/B"]["visitors"] + 1000
        # A late event for /B on a day of the range: /B sums to other events, so it is counted and kept again.
        late_at = datetime(2026, 10, 14, 12, 5, tzinfo=UTC)
        late = Event(SITE, "page_view", "/B", None, epoch_microseconds(late_at), 0, visitor="late-visitor")
        await store(db, [late])
        events.append(late)
        expected = brute_breakdown(events, SITE, *bounds(FIRST, LAST, "UTC"), "path", NAMES)
        assert (await breakdown(client, PARAMS))["results"] == expected
        row = next(row for row in expected if row["path"] == "/B")
        assert (await kept_counts(db))["/B"][1:] == (row["visitors"], row["users"])


async def test_a_range_still_running_keeps_nothing(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    today = datetime.now(UTC).date()
    await store(
        db,
        [
            Event(SITE, "page_view", "/", None, epoch_microseconds(_noon(today - timedelta(days=back))), 0, visitor="v")
            for back in range(1, 4)
        ],
    )
    await keep_past_days(pool, today, 30)
    params = {**custom(SITE, today - timedelta(days=3), today), "property": "path", "metrics": "visitors"}
    async with client_with() as client:
        # One visitor on three kept days: counted as a union of the days' hashes, which a range over would keep.
        assert (await breakdown(client, params))["results"] == [{"path": "/", "visitors": 1}]
    assert await db.fetchval("SELECT count(*) FROM report_value_days WHERE site_id = $1", SITE) == 3
    assert await db.fetchval("SELECT count(*) FROM report_value_counts") == 0


async def test_an_erasure_forgets_the_kept_counts(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await kept_weeks(db, pool)
    async with client_with() as client:
        await breakdown(client, PARAMS)
    assert await kept_counts(db)
    assert (await erase_user(pool, SITE, "u3")).events > 0
    assert await db.fetchval("SELECT count(*) FROM report_value_counts") == 0


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12), UTC)


def _day(sent: Event) -> date:
    return datetime.fromtimestamp(sent.ts_us / 1_000_000, UTC).date()
