"""Ingest v2 end to end over a real socket, Redis and PostgreSQL: what is stored for each field, identity with and
without event ids, bots, the visitor salts, the Plausible endpoint, and records and rows from the previous version."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import redis.asyncio as aioredis

from analytics.enrich.visitor import visitor_id
from analytics.events.contract import epoch_microseconds
from analytics.queue.keys import QueueKeys
from analytics.queue.salts import DailySalts
from analytics.writer.loop import Writer
from tests.helpers.databases import migrated_before
from tests.helpers.factories import CHROME, IPHONE, event
from tests.helpers.waiting import eventually

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
V2_COLUMNS = (
    "event_id, visitor, referrer, source, utm_source, utm_medium, utm_campaign, utm_term, utm_content, browser, "
    "browser_version, os, os_version, device, country, props"
)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def rows_when(db: asyncpg.Connection, expected: int, where: str = "TRUE") -> list[asyncpg.Record]:
    async def check() -> list[asyncpg.Record]:
        rows = await db.fetch(f'SELECT *, "timestamp" AS ts FROM events WHERE {where} ORDER BY "timestamp", id')
        assert len(rows) == expected
        return rows

    return await eventually(check)


async def accepted(client: httpx.AsyncClient, document: Any, path: str = "/api/ingestion/event", **kw: Any) -> None:
    response = await client.post(path, json=document, **kw)
    assert response.status_code == 202, response.text


async def test_a_browser_event_is_stored_with_everything_it_says(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    body = event(
        path=None,
        user_id=None,
        event_id="0b6f6a40-5d1f-4a53-9d4e-1d2b3c4d5e6f",
        url="https://www.example.com/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=launch#plans",
        referrer="https://news.ycombinator.com/item?id=42",
        props={"plan": "pro", "seats": 3, "annual": True, "ratio": 0.5},
        ip="81.2.69.160",
    )
    await accepted(service, body, headers={"user-agent": CHROME})
    [row] = await rows_when(db, 1)
    assert row["path"] == "/pricing"
    assert row["event_id"] == "0b6f6a40-5d1f-4a53-9d4e-1d2b3c4d5e6f"
    assert (row["referrer"], row["source"]) == ("https://news.ycombinator.com/item", "newsletter")
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == ("newsletter", "email", "launch")
    assert (row["browser"], row["browser_version"], row["os"], row["os_version"], row["device"]) == (
        "Chrome",
        "131",
        "Windows",
        "10",
        "desktop",
    )
    assert row["country"] == "GB"
    assert json.loads(row["props"]) == {"plan": "pro", "seats": 3, "annual": True, "ratio": 0.5}
    assert row["visitor"] is not None
    assert len(row["visitor"]) == 16
    assert "81.2.69.160" not in " ".join(str(value) for value in row.values())


async def test_one_event_id_is_one_row_whatever_else_a_resend_changes(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    first = event(event_id="evt-1", timestamp="2025-11-12T19:30:01Z", path="/a")
    resent = event(event_id="evt-1", timestamp="2025-11-12T19:31:00Z", path="/b", event_type="click")
    other = event(event_id="evt-2", timestamp="2025-11-12T19:30:01Z", path="/a")
    for body in (first, resent, other, first):
        await accepted(service, body)
    rows = await rows_when(db, 2)
    assert sorted(row["event_id"] for row in rows) == ["evt-1", "evt-2"]
    assert [row["path"] for row in rows if row["event_id"] == "evt-1"] == ["/a"]


async def test_a_retry_with_clock_skew_correction_is_one_row_at_the_corrected_time(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """A client whose clock is 2 days behind: the stored time is moved to the server's, and a retry sent 2 seconds
    later (a correction 2 s larger) still maps to the same key, because the key uses the client's own timestamp."""
    skew = timedelta(days=2)
    client_now = datetime.now(UTC) - skew
    body = event(user_id=None, timestamp=iso(client_now), sent_at=iso(client_now))
    await accepted(service, body)
    await accepted(service, {**body, "sent_at": iso(client_now - timedelta(seconds=2))})
    [row] = await rows_when(db, 1)
    assert abs(row["ts"] - datetime.now(UTC)) < timedelta(seconds=30)


async def test_anonymous_views_of_one_path_in_one_millisecond_are_distinct_visitors_not_one_event(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """2,000 visitors view `/` within one second (every millisecond shared by two): 2,000 rows, not one a
    millisecond; every request sent twice (a client's retry) still gives 2,000."""
    start = datetime(2025, 11, 12, 19, 30, 1, tzinfo=UTC)
    views = [
        event(
            user_id=None,
            path="/",
            timestamp=iso(start + timedelta(milliseconds=number // 2)),
            ip=f"198.51.{number // 250}.{number % 250}",
            user_agent=IPHONE,
        )
        for number in range(2000)
    ]
    for attempt in range(2):
        for chunk in range(0, 2000, 1000):
            await accepted(service, views[chunk : chunk + 1000], "/api/ingestion/events")
        if attempt == 0:
            await rows_when(db, 2000)
    rows = await rows_when(db, 2000)
    assert len({row["visitor"] for row in rows}) == 2000
    stats = (await service.get("/api/reporting/stats", params={"site_id": "site-abc-123", "date": "2025-11-12"})).json()
    assert stats["data"]["total_views"] == 2000


async def test_with_a_user_id_the_key_is_v1s_whatever_the_visitor(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """The same user's event from two devices is one event, as in v1 (identity without the visitor)."""
    await accepted(service, event(), headers={"user-agent": CHROME})
    await accepted(service, event(), headers={"user-agent": IPHONE})
    await accepted(service, event(ip="8.8.8.8"))
    [row] = await rows_when(db, 1)
    assert row["visitor"] == "user-xyz-789"


async def test_bots_are_answered_202_never_stored_and_counted_by_reason(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    headless = CHROME.replace("Chrome/", "HeadlessChrome/")
    await accepted(service, event(user_id="bot-1"), headers={"user-agent": GOOGLEBOT})
    await accepted(service, event(user_id="bot-2"), headers={"user-agent": headless})
    await accepted(service, event(user_id="bot-3"), headers={"user-agent": ""})
    await accepted(
        service, [event(user_id="bot-4", user_agent=GOOGLEBOT), event(user_id="human")], "/api/ingestion/events"
    )
    [row] = await rows_when(db, 1)
    assert row["user_id"] == "human"
    metrics = (await service.get("/metrics")).text
    for reason, count in (("crawler", 2), ("headless", 1), ("empty", 1)):
        assert f'analytics_bot_events_total{{reason="{reason}"}} {count:.1f}' in metrics
    stats = (await service.get("/api/reporting/stats", params={"site_id": "site-abc-123"})).json()["data"]
    assert (stats["total_views"], stats["unique_users"]) == (1, 1)


async def test_the_plausible_events_api_is_stored_as_a_v2_event(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    pageview = {"n": "pageview", "u": "https://example.com/docs?utm_source=x", "d": "example.com", "r": None}
    custom = {"name": "Signup", "url": "https://example.com/docs", "domain": "example.com", "props": {"plan": "pro"}}
    before = datetime.now(UTC)
    await accepted(service, pageview, "/api/event", headers={"user-agent": CHROME, "content-type": "text/plain"})
    await accepted(service, custom, "/api/event", headers={"user-agent": CHROME, "content-type": "text/plain"})
    rows = await rows_when(db, 2, "site_id = 'example.com'")
    assert sorted((row["event_type"], row["path"], row["source"]) for row in rows) == [
        ("Signup", "/docs", None),
        ("page_view", "/docs", "x"),
    ]
    assert {row["visitor"] for row in rows} == {rows[0]["visitor"]}
    assert all(before - timedelta(seconds=1) <= row["ts"] <= datetime.now(UTC) for row in rows)
    assert [json.loads(row["props"]) for row in rows if row["event_type"] == "Signup"] == [{"plan": "pro"}]
    bad = await service.post("/api/event", json={"n": "pageview", "u": "ftp://example.com/"})
    assert bad.status_code == 400
    assert [error["path"] for error in bad.json()["errors"]] == ["body.domain"]


async def test_salts_are_shared_rotate_at_utc_midnight_and_expire_48_hours_after_their_day_began(
    redis: aioredis.Redis, keys: QueueKeys
) -> None:
    now = time.time()
    today = DailySalts(redis, keys, clock=lambda: now)
    other_process = DailySalts(redis, keys, clock=lambda: now)
    salt = await today.today()
    assert await other_process.today() == salt  # every api process hashes with the same salt
    assert today.cached() == salt
    day_began = int(now // 86_400 * 86_400)
    key = keys.salt(datetime.fromtimestamp(day_began, UTC).date().isoformat())
    assert await redis.execute_command("EXPIRETIME", key) == day_began + 48 * 3600

    clock = [float(day_began + 86_400 - 0.001)]
    rotating = DailySalts(redis, keys, clock=lambda: clock[0])
    assert await rotating.today() == salt
    clock[0] = day_began + 86_400.0  # UTC midnight
    assert rotating.cached() is None
    tomorrow = await rotating.today()
    assert tomorrow != salt
    site, address = "s", "203.0.113.9"
    assert visitor_id(salt, site, address, CHROME) != visitor_id(tomorrow, site, address, CHROME)

    two_days_ago = DailySalts(redis, keys, clock=lambda: now - 2 * 86_400)
    await two_days_ago.today()
    old_key = keys.salt(datetime.fromtimestamp(day_began - 2 * 86_400, UTC).date().isoformat())
    assert await redis.exists(old_key) == 0  # past its 48 hours: Redis no longer holds it


async def test_records_queued_by_the_previous_version_are_written_with_v2_fields_empty(
    redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection, writer: Writer
) -> None:
    microseconds = epoch_microseconds(datetime(2025, 11, 12, 10, tzinfo=UTC))
    old = [msgspec.msgpack.encode(("site-abc-123", "page_view", "/a", None, microseconds + n, 0)) for n in range(3)]
    await redis.rpush(keys.queue, *old)
    rows = await rows_when(db, 3)
    assert all(row[column] is None for row in rows for column in V2_COLUMNS.split(", "))
    assert await redis.llen(keys.dead) == 0


async def test_the_migration_keeps_every_stored_event(postgres_url: str) -> None:
    async with migrated_before(postgres_url, "0006", "enriched") as database:
        connection = await asyncpg.connect(database.url)
        await connection.execute(
            """INSERT INTO events (event_key, site_id, event_type, path, user_id, "timestamp")
               SELECT md5(n::text)::uuid, 's', 'page_view', '/p' || n, 'u' || n,
                      '2025-11-12T10:00:00Z'::timestamptz + n * interval '1 second'
               FROM generate_series(1, 100) n"""
        )
        before = await connection.fetch("SELECT * FROM events ORDER BY id")
        database.apply_the_rest()
        unknown = V2_COLUMNS.replace("visitor, ", "").replace(", ", " IS NULL AND ")
        after = await connection.fetch(f"SELECT *, ({unknown} IS NULL) AS empty FROM events ORDER BY id")
        assert [dict(row) for row in before] == [
            {key: value for key, value in dict(row).items() if key in dict(before[0])} for row in after
        ]
        assert all(row["empty"] for row in after)
        # 0008.visits: an event's visitor is its user, as ingest v2 sets it.
        assert all(row["visitor"] == row["user_id"] for row in after)
        await connection.close()
