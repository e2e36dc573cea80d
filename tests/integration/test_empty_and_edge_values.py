"""Empty optional strings mean absent, timestamps keep their day, and stored rows from before are carried over."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import httpx
import msgspec
import redis.asyncio as aioredis

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.queue.keys import QueueKeys
from analytics.store.events import merge, prepare
from analytics.writer.loop import Writer
from tests.helpers.databases import migrated_before
from tests.helpers.factories import event
from tests.helpers.waiting import eventually


async def ingest(client: httpx.AsyncClient, documents: list[dict[str, Any]]) -> None:
    for document in documents:
        response = await client.post("/api/ingestion/event", json=document)
        assert response.status_code == 202, response.text


async def stored(db: asyncpg.Connection, expected: int) -> list[asyncpg.Record]:
    async def check() -> list[asyncpg.Record]:
        rows = await db.fetch('SELECT path, user_id, "timestamp" FROM events ORDER BY "timestamp", path')
        assert len(rows) == expected
        return rows

    return await eventually(check)


async def day_stats(client: httpx.AsyncClient, day: str) -> Any:
    response = await client.get("/api/reporting/stats", params={"site_id": "site-abc-123", "date": day})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_empty_user_and_path_count_as_absent(service: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await ingest(
        service,
        [
            event(user_id="", path="", timestamp="2025-11-12T10:00:00Z"),
            event(user_id="", path="/a", timestamp="2025-11-12T10:00:01Z"),
            # the same event as the first, sent with nulls: one event, stored once
            event(user_id=None, path=None, timestamp="2025-11-12T10:00:00Z"),
        ],
    )
    rows = await stored(db, 2)
    assert [(row["path"], row["user_id"]) for row in rows] == [(None, None), ("/a", None)]
    data = await day_stats(service, "2025-11-12")
    assert (data["total_views"], data["unique_users"], data["top_paths"]) == (2, 0, [{"path": "/a", "views": 1}])


async def test_seven_fractional_digits_are_truncated_not_rounded_into_the_next_day(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await ingest(service, [event(timestamp="2025-12-31T23:59:59.9999999Z"), event(timestamp="2025-12-31T23:59:60Z")])
    rows = await stored(db, 1)  # a leap second is :59.999999, the same instant as the first
    assert rows[0]["timestamp"] == datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert (await day_stats(service, "2025-12-31"))["total_views"] == 1
    response = await service.get("/api/reporting/stats", params={"site_id": "site-abc-123", "date": "2026-01-01"})
    assert response.status_code == 404


async def test_records_queued_with_empty_strings_by_the_previous_version_are_written_as_null(
    redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection, writer: Writer
) -> None:
    microseconds = epoch_microseconds(datetime(2025, 11, 12, 10, tzinfo=UTC))
    # The previous version's encoding: a msgpack array (site_id, event_type, path, user_id, µs, accepted_ms).
    old_records = [
        msgspec.msgpack.encode(("site-abc-123", "page_view", "", "", microseconds, 0)),
        msgspec.msgpack.encode(("site-abc-123", "page_view", None, None, microseconds, 0)),
    ]
    await redis.rpush(keys.queue, *old_records)
    rows = await stored(db, 1)
    assert (rows[0]["path"], rows[0]["user_id"]) == (None, None)
    totals = await db.fetchrow("SELECT views, users FROM daily_totals")
    assert tuple(totals) == (1, 0)


REFERENCE_SQL = """
SELECT site_id, ("timestamp" AT TIME ZONE 'UTC')::date AS day, count(*) AS views,
       count(DISTINCT user_id) AS users, count(*) FILTER (WHERE path IS NOT NULL) AS path_views
FROM events WHERE event_type = 'page_view' GROUP BY 1, 2 ORDER BY 1, 2
"""
# The writer before 0005: every row its own event_key (the SQL function of 0003), '' kept as a value.
OLD_INSERT_SQL = """
INSERT INTO events (event_key, site_id, event_type, path, user_id, "timestamp")
VALUES (event_key($1, $2, $4, $3, $5), $1, $2, $3, $4,
        to_timestamp($5::bigint / 1000000) + ($5::bigint % 1000000) * interval '1 microsecond')
"""
OLD_ROLLUPS_SQL = """
CREATE TEMP VIEW old_views AS
SELECT site_id, ("timestamp" AT TIME ZONE 'UTC')::date AS day, path, user_id FROM events WHERE event_type = 'page_view';
INSERT INTO daily_users (site_id, day, user_md5)
SELECT DISTINCT site_id, day, md5(user_id)::uuid FROM old_views WHERE user_id IS NOT NULL;
INSERT INTO daily_totals (site_id, day, views, users)
SELECT site_id, day, count(*), count(DISTINCT user_id) FROM old_views GROUP BY 1, 2;
INSERT INTO daily_path_views (site_id, day, path_md5, path, views)
SELECT site_id, day, md5(path)::uuid, path, count(*) FROM old_views WHERE path IS NOT NULL GROUP BY 1, 2, 4;
INSERT INTO site_users (site_id, user_md5)
SELECT DISTINCT site_id, md5(user_id)::uuid FROM old_views WHERE user_id IS NOT NULL;
INSERT INTO site_totals (site_id, views, users)
SELECT site_id, count(*), count(DISTINCT user_id) FROM old_views GROUP BY 1;
INSERT INTO site_path_views (site_id, path_md5, path, views)
SELECT site_id, md5(path)::uuid, path, count(*) FROM old_views WHERE path IS NOT NULL GROUP BY 1, 3;
DROP VIEW old_views;
"""
ROLLUP_SQL = """
SELECT t.site_id, t.day, t.views, t.users,
       (SELECT coalesce(sum(p.views), 0) FROM daily_path_views p WHERE p.site_id = t.site_id AND p.day = t.day)
FROM daily_totals t ORDER BY 1, 2
"""


async def test_migration_turns_stored_empty_strings_into_nulls_and_recounts_rollups(postgres_url: str) -> None:
    async with migrated_before(postgres_url, "0005", "blank") as database:
        connection = await asyncpg.connect(database.url)
        at = epoch_microseconds(datetime(2025, 11, 12, 10, tzinfo=UTC))
        # What the previous writer stored: '' counted as a user and as a path. Written with that schema's SQL (the
        # writer of today inserts columns it does not have yet).
        old: list[Event] = [
            Event("s", "page_view", "", "", at, 0),
            Event("s", "page_view", None, None, at, 0),  # the same event with nulls: becomes a duplicate
            Event("s", "page_view", "", "u1", at + 1, 0),
            Event("s", "page_view", None, "u1", at + 1, 0),  # twin of the row above
            Event("s", "page_view", "/a", "", at + 2, 0),
            Event("s", "page_view", "/a", "u2", at + 3, 0),
            Event("s", "click", "", "", at + 4, 0),
            Event("other", "page_view", "/b", "u3", at, 0),  # a site without '' rows keeps its rollups untouched
        ]
        await connection.executemany(
            OLD_INSERT_SQL, [(e.site_id, e.event_type, e.path, e.user_id, e.ts_us) for e in old]
        )
        await connection.execute(OLD_ROLLUPS_SQL)
        assert tuple(await connection.fetchrow("SELECT views, users FROM site_totals WHERE site_id = 's'")) == (6, 3)
        untouched = await connection.fetch("SELECT * FROM daily_totals WHERE site_id = 'other'")

        database.apply_the_rest()

        blanks = await connection.fetchval("SELECT count(*) FROM events WHERE path = '' OR user_id = ''")
        assert blanks == 0
        assert await connection.fetchval("SELECT count(*) FROM events") == 6
        assert await connection.fetch(ROLLUP_SQL) == await connection.fetch(REFERENCE_SQL)
        assert tuple(await connection.fetchrow("SELECT views, users FROM site_totals WHERE site_id = 's'")) == (4, 2)
        assert await connection.fetchval("SELECT count(*) FROM site_path_views WHERE path = ''") == 0
        assert await connection.fetch("SELECT * FROM daily_totals WHERE site_id = 'other'") == untouched
        rows = await connection.fetch("SELECT day, views FROM daily_totals WHERE site_id = 's'")
        assert [tuple(row) for row in rows] == [(date(2025, 11, 12), 4)]
        # The recomputed keys are the writer's: the same events delivered again (now with nulls) store nothing.
        normalised = [Event(e.site_id, e.event_type, e.path or None, e.user_id or None, e.ts_us) for e in old]
        await prepare(connection)
        assert await merge(connection, normalised) == 0
        await connection.close()
