"""The distinct keeper (analytics/stats/keeper.py): each past UTC day's distinct visitors and users of every site,
counted from the report cells and kept; equal to a count over the events sent; kept once, counted again after a
late event, never for today; what reports then answer; not for a site an erasure is under way for, nor while another
keeper is at work."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from analytics.events.record import Event
from analytics.stats.keeper import DistinctKeeper, KeptDays, keep_past_days
from tests.helpers.servers import Client
from tests.helpers.waiting import eventually
from tests.integration.test_report_distincts import KEPT, assert_as_raw_events, event, store

TODAY = date(2026, 10, 24)
FIRST = datetime.combine(TODAY - timedelta(days=3), time(), UTC)
KEPT_DAYS = """
SELECT site_id, starts, events, visitors, users FROM report_distincts
WHERE ends - starts = interval '1 day' ORDER BY site_id, starts
"""


def sent() -> list[Event]:
    """Three sites over the three days before TODAY and TODAY itself, visitors and users repeating across days."""
    return [
        event(site, f"v{(n * 7 + number) % 23}", FIRST + timedelta(minutes=41 * n), f"u{n % 5}" if n % 3 else None)
        for number, site in enumerate(("alpha", "beta", "gamma"))
        for n in range(number * 10, 140)
    ]


def by_day(events: list[Event]) -> dict[tuple[str, datetime], tuple[int, int, int]]:
    """The oracle: events, distinct visitors and distinct users by site and UTC day."""
    groups: dict[tuple[str, datetime], list[Event]] = defaultdict(list)
    for sent_event in events:
        instant = datetime.fromtimestamp(sent_event.ts_us / 1e6, UTC)
        groups[sent_event.site_id, datetime.combine(instant.date(), time(), UTC)].append(sent_event)
    return {
        key: (
            len(group),
            len({item.visitor for item in group}),
            len({item.user_id for item in group if item.user_id is not None}),
        )
        for key, group in groups.items()
    }


async def kept(db: asyncpg.Connection) -> dict[tuple[str, datetime], tuple[int, int, int]]:
    rows = await db.fetch(KEPT_DAYS)
    return {(row["site_id"], row["starts"]): (row["events"], row["visitors"], row["users"]) for row in rows}


async def test_past_utc_days_are_kept_as_counted_from_the_events_and_recounted_after_a_late_event(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    events = sent()
    await store(db, events)
    expected = {key: counts for key, counts in by_day(events).items() if key[1].date() < TODAY}
    assert len(expected) == 9
    assert await keep_past_days(pool, TODAY, 5) == KeptDays(9, 9)
    assert await kept(db) == expected
    assert await keep_past_days(pool, TODAY, 5) == KeptDays()
    late = event("beta", "newcomer", FIRST + timedelta(days=1, hours=5), "u-late")
    await store(db, [late])
    assert await keep_past_days(pool, TODAY, 5) == KeptDays(1, 1)
    assert await kept(db) == {key: counts for key, counts in by_day([*events, late]).items() if key[1].date() < TODAY}


async def test_reports_answer_the_kept_days(client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    await store(db, sent())
    await keep_past_days(pool, TODAY, 5)
    # Changed behind the reports' back, the kept counts are what a daily series answers: it read them.
    await db.execute("UPDATE report_distincts SET visitors = visitors + 1000 WHERE site_id = 'alpha'")
    params = {"site_id": "alpha", "period": "custom", "from": "2026-10-21", "to": "2026-10-23", "interval": "day"}
    async with client_with() as client:
        response = await client.get("/api/v2/stats/timeseries", params={**params, "metrics": "visitors"})
    assert response.status_code == 200, response.text
    counts = by_day(sent())
    assert [row["visitors"] for row in response.json()["data"]["results"]] == [
        counts["alpha", FIRST + timedelta(days=number)][1] + 1000 for number in range(3)
    ]


async def test_nothing_is_kept_for_a_site_being_erased_nor_while_another_keeper_works(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await store(db, sent())
    async with db.transaction():  # what an erasure of beta holds while it deletes beta's kept counts
        await db.execute("SELECT pg_advisory_xact_lock(7030, hashtext('beta'))")
        assert await keep_past_days(pool, TODAY, 5) == KeptDays(6, 6)
    assert {site for site, _ in await kept(db)} == {"alpha", "gamma"}
    async with db.transaction():  # another keeper's transaction
        await db.execute("SELECT pg_advisory_xact_lock(7031, 0)")
        assert await keep_past_days(pool, TODAY, 5) == KeptDays()
    assert {site for site, _ in await kept(db)} == {"alpha", "gamma"}
    assert await keep_past_days(pool, TODAY, 5) == KeptDays(3, 3)
    assert {site for site, _ in await kept(db)} == {"alpha", "beta", "gamma"}


async def test_the_keeper_keeps_yesterday_until_stopped(db: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    midnight = datetime.combine(datetime.now(UTC).date(), time(), UTC)
    events = [event("live", f"v{n % 9}", midnight - timedelta(hours=20) + timedelta(minutes=n)) for n in range(50)]
    await store(db, [*events, event("live", "today", datetime.now(UTC) - timedelta(seconds=1))])
    keeper = DistinctKeeper(pool, pass_interval_s=0.05)
    task = asyncio.create_task(keeper.run())

    async def yesterday_kept() -> None:
        assert await kept(db) == {("live", midnight - timedelta(days=1)): (50, 9, 0)}

    try:
        await eventually(yesterday_kept, timeout_s=10)
    finally:
        keeper.stop()
        await asyncio.wait_for(task, 5)


async def test_a_range_in_another_zone_unions_the_kept_utc_days_and_counts_only_its_ends(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await store(db, sent())
    await keep_past_days(pool, TODAY, 5)
    for zone, offset in (
        ("Asia/Kolkata", timedelta(hours=5, minutes=30)),
        ("Asia/Kathmandu", timedelta(hours=5, minutes=45)),
    ):
        params = {"site_id": "beta", "period": "custom", "from": "2026-10-21", "to": "2026-10-23", "timezone": zone}
        async with client_with() as client:
            await assert_as_raw_events(client, [("aggregate", {**params, "metrics": "visitors,users,pageviews"})])
        start, end = FIRST - offset, FIRST + timedelta(days=3) - offset
        ranges = {(row["starts"], row["ends"]) for row in await db.fetch(KEPT, "beta")}
        # Kept: the range, and its last part (its first, before the first event, is empty); the two whole UTC days
        # between came from the keeper, and no local day was counted.
        assert {(FIRST + timedelta(days=2), end), (start, end)} <= ranges
        assert not {(end - timedelta(days=days), end - timedelta(days=days - 1)) for days in (1, 2, 3)} & ranges
