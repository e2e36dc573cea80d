"""The distinct counts reports keep (migrations/0013.report_distincts.sql, analytics/stats/cells.py): kept for ranges
already over and read back, recounted when a late event lands in the range, never kept for a range that runs to
now, forgotten by an erasure and not kept while one runs; past 10,000 a union of days is an estimate within 2 % that
`meta.approximate` flags, at or below it exact. Raw events (the same report with a filter every event passes) are
the recount the answers are compared with."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.store.erasure import erase_user
from analytics.store.events import merge, prepare
from tests.helpers.servers import Client

DAY = datetime(2026, 10, 20, tzinfo=UTC)
EVERY_EVENT = "event_type!=(none)"
KEPT = "SELECT starts, ends, visitors, users FROM report_distincts WHERE site_id = $1 ORDER BY starts, ends"


def event(site: str, visitor: str, at: datetime, user: str | None = None) -> Event:
    return Event(site, "page_view", "/", user, epoch_microseconds(at), 0, visitor=visitor)


async def store(db: asyncpg.Connection, events: Iterable[Event]) -> None:
    await prepare(db)
    batch = list(events)
    for offset in range(0, len(batch), 5000):
        await merge(db, batch[offset : offset + 5000])


def requests(site: str, first: str, last: str) -> list[tuple[str, dict[str, str]]]:
    custom = {"site_id": site, "period": "custom", "from": first, "to": last, "metrics": "visitors,users,pageviews"}
    return [
        ("aggregate", custom),
        ("timeseries", {**custom, "interval": "day"}),
        ("timeseries", {**custom, "interval": "week", "timezone": "Asia/Kolkata"}),
        ("aggregate", {**custom, "timezone": "Pacific/Chatham"}),
    ]


async def answers(client: httpx.AsyncClient, asked: list[tuple[str, dict[str, str]]], filters: str = "") -> list[Any]:
    found = []
    for kind, params in asked:
        response = await client.get(f"/api/v2/stats/{kind}", params={**params, "filters": filters})
        assert response.status_code == 200, response.text
        found.append(response.json()["data"])
    return found


async def assert_as_raw_events(client: httpx.AsyncClient, asked: list[tuple[str, dict[str, str]]]) -> list[Any]:
    from_cells, from_events = await answers(client, asked), await answers(client, asked, EVERY_EVENT)
    assert [data["results"] for data in from_cells] == [data["results"] for data in from_events]
    assert all(data["meta"] == {"approximate": False} for data in from_cells)
    return from_cells


async def test_past_ranges_are_kept_read_back_and_recounted_after_a_late_event(
    client_with: Client, db: asyncpg.Connection
) -> None:
    site = "kept"
    await store(db, [event(site, f"v{n % 40}", DAY + timedelta(minutes=37 * n), f"u{n % 7}") for n in range(200)])
    asked = requests(site, "2026-10-20", "2026-10-24")
    async with client_with() as client:
        first = await assert_as_raw_events(client, asked)
        kept = await db.fetch(KEPT, site)
        days = {(row["starts"], row["ends"]) for row in kept if row["ends"] - row["starts"] == timedelta(days=1)}
        assert len(days) >= 5
        assert len(kept) > len(days)
        # Read back: a kept count changed behind the reports' back is what they answer, as long as it holds.
        await db.execute("UPDATE report_distincts SET visitors = visitors + 1000 WHERE site_id = $1", site)
        tampered = await answers(client, asked)
        assert tampered[0]["results"]["visitors"]["value"] == first[0]["results"]["visitors"]["value"] + 1000
        # A late event changes its day's cells' sum: every range holding that day is counted again, from the sets of
        # the days kept (their counts are not used), and the other days' kept counts still hold.
        await store(db, [event(site, "late-visitor", DAY + timedelta(days=1, hours=3), "late-user")])
        late = await answers(client, asked)
        assert late[0]["results"]["visitors"]["value"] == first[0]["results"]["visitors"]["value"] + 1
        by_day = [bucket["visitors"] for bucket in late[1]["results"]]
        before = [bucket["visitors"] for bucket in first[1]["results"]]
        assert by_day == [count + (1 if day == 1 else 1000) for day, count in enumerate(before)]
        await db.execute("UPDATE report_distincts SET visitors = visitors - 1000 WHERE visitors >= 1000")
        await assert_as_raw_events(client, asked)


async def test_a_range_that_runs_to_now_is_not_kept(client_with: Client, db: asyncpg.Connection) -> None:
    site = "today"
    now = datetime.now(UTC)
    await store(db, [event(site, f"v{n}", now - timedelta(days=2, minutes=n)) for n in range(30)])
    await store(db, [event(site, f"w{n}", now - timedelta(minutes=n)) for n in range(30)])
    today = now.date().isoformat()
    async with client_with() as client:
        await assert_as_raw_events(client, requests(site, (now - timedelta(days=3)).date().isoformat(), today))
    kept = await db.fetch(KEPT, site)
    assert kept
    assert all(row["ends"] <= now for row in kept)


async def test_an_erasure_forgets_the_kept_counts_and_none_are_kept_while_it_runs(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    site = "erased"
    await store(db, [event(site, f"u{n % 5}", DAY + timedelta(hours=n), f"u{n % 5}") for n in range(60)])
    asked = requests(site, "2026-10-20", "2026-10-23")
    async with client_with() as client:
        await assert_as_raw_events(client, asked)
        assert await db.fetch(KEPT, site)
        erasure = await erase_user(pool, site, "u3")
        assert erasure.events == 12
        assert await db.fetch(KEPT, site) == []
        await assert_as_raw_events(client, asked)
        assert await db.fetch(KEPT, site)
        async with db.transaction():  # what an erasure holds while it deletes the kept counts
            await db.execute("SELECT pg_advisory_xact_lock(7030, hashtext($1))", site)
            await db.execute("DELETE FROM report_distincts WHERE site_id = $1", site)
            await assert_as_raw_events(client, asked)
            assert await db.fetch(KEPT, site) == []
        assert await db.fetch(KEPT, site) == []  # nothing kept meanwhile
        await assert_as_raw_events(client, asked)
        assert await db.fetch(KEPT, site)


async def test_past_10000_a_union_of_days_is_an_estimate_within_2_percent(
    client_with: Client, db: asyncpg.Connection
) -> None:
    """Two days of 12,000 visitors (and users), 6,000 on both: each day is counted exactly, the two together are
    18,000 estimated from the days' registers, flagged; two days of 6,000 sharing 2,000 are exactly 10,000."""
    first, second = DAY, DAY + timedelta(days=1)
    big = [event("big", f"v{n}", first + timedelta(seconds=n), f"u{n}") for n in range(12_000)]
    big += [event("big", f"v{n}", second + timedelta(seconds=n), f"u{n}") for n in range(6_000, 18_000)]
    mid = [event("mid", f"v{n}", first + timedelta(seconds=n), f"u{n}") for n in range(6_000)]
    mid += [event("mid", f"v{n}", second + timedelta(seconds=n), f"u{n}") for n in range(4_000, 10_000)]
    await store(db, big + mid)
    both = {"period": "custom", "from": "2026-10-20", "to": "2026-10-21", "metrics": "visitors,users"}
    async with client_with() as client:
        for _ in range(2):  # counted, then kept
            (by_day,) = await answers(client, [("timeseries", {"site_id": "big", **both, "interval": "day"})])
            assert [bucket["visitors"] for bucket in by_day["results"]] == [12_000, 12_000]
            assert [bucket["users"] for bucket in by_day["results"]] == [12_000, 12_000]
            assert by_day["meta"] == {"approximate": False}
            (together,) = await answers(client, [("aggregate", {"site_id": "big", **both})])
            assert together["meta"] == {"approximate": True}
            for metric in ("visitors", "users"):
                assert abs(together["results"][metric]["value"] - 18_000) <= 0.02 * 18_000
            (exactly,) = await answers(client, [("aggregate", {"site_id": "mid", **both})])
            assert exactly["results"] == {"visitors": {"value": 10_000}, "users": {"value": 10_000}}
            assert exactly["meta"] == {"approximate": False}
