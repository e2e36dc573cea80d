"""`events` partitioned by month (migrations/0010.partitioned_events.sql, analytics/store/partitions.py): where events
land, the idempotency key across partitions, the migration that carried the stored events over, and retention.

Run on the embedded PostgreSQL 18 by the README's test command and on PostgreSQL 15 by `.ci/run`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.store.events import merge, prepare
from analytics.store.partitions import AHEAD_MONTHS, Partitions, add_months
from tests.helpers.databases import migrated_before
from tests.helpers.servers import Client

NEW_YORK = ZoneInfo("America/New_York")
WHERE = 'SELECT tableoid::regclass::text AS partition, "timestamp", path FROM events ORDER BY "timestamp"'


def page_view(site: str, at: datetime, path: str, **fields: object) -> Event:
    return Event(site, "page_view", path, None, epoch_microseconds(at), 0, visitor="v", **fields)  # type: ignore[arg-type]


async def store(db: asyncpg.Connection, events: list[Event], partitions: Partitions | None = None) -> int:
    await prepare(db)
    await (partitions or Partitions()).before_batch(db, events)
    return await merge(db, events)


def partition_of(day: date) -> str:
    return f"events_{day:%Y_%m}"


async def test_events_land_in_the_partition_of_their_utc_month(db: asyncpg.Connection) -> None:
    moments = [
        datetime(2026, 1, 31, 23, 30, tzinfo=NEW_YORK),  # February in UTC
        datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
        datetime(2026, 2, 28, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    ]
    assert await store(db, [page_view("s", at, f"/{n}") for n, at in enumerate(moments)]) == 4
    rows = [(row["partition"], row["path"]) for row in await db.fetch(WHERE)]
    assert rows == [
        ("events_2026_01", "/1"),
        ("events_2026_02", "/0"),
        ("events_2026_02", "/2"),
        ("events_2026_03", "/3"),
    ]


async def test_far_months_go_to_the_default_partition_until_their_month_is_made(db: asyncpg.Connection) -> None:
    old = [
        page_view("s", datetime(2001, 3, 15, tzinfo=UTC), "/march"),
        page_view("s", datetime(2001, 4, 2, tzinfo=UTC), "/april"),
    ]
    assert await store(db, old) == 2
    assert {row["partition"] for row in await db.fetch(WHERE)} == {"events_default"}
    assert await db.fetchval("SELECT ensure_events_partition('2001-03-20')") is True
    assert await db.fetchval("SELECT ensure_events_partition('2001-03-01')") is False
    rows = [(row["partition"], row["path"]) for row in await db.fetch(WHERE)]
    assert rows == [("events_2001_03", "/march"), ("events_default", "/april")]


async def test_an_event_is_stored_once_whichever_months_its_deliveries_fall_in(db: asyncpg.Connection) -> None:
    """The pitfall a key of (event_key, timestamp) would have: an event_id's key leaves the time out, and skew
    correction moves the stored time of one event between deliveries."""
    january = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)
    february = datetime(2026, 2, 1, 0, 0, 1, tzinfo=UTC)
    with_id = page_view("s", january, "/id", event_id="evt-1")
    resent = page_view("s", february, "/id", event_id="evt-1")
    skewed = page_view("s", january, "/skew", client_ts_us=epoch_microseconds(january))
    skewed_again = page_view("s", february, "/skew", client_ts_us=epoch_microseconds(january))
    assert await store(db, [with_id, skewed]) == 2
    assert await store(db, [resent, skewed_again]) == 0
    assert await store(db, [resent, resent, skewed_again, with_id]) == 0
    rows = [(row["partition"], row["path"]) for row in await db.fetch(WHERE)]
    assert sorted(rows) == [("events_2026_01", "/id"), ("events_2026_01", "/skew")]
    assert await db.fetchval("SELECT sum(views) FROM daily_totals WHERE site_id = 's'") == 2
    assert await db.fetchval("SELECT count(*) FROM event_keys") == 2


async def test_a_batch_holding_one_new_event_twice_stores_it_once(db: asyncpg.Connection) -> None:
    event = page_view("s", datetime(2026, 5, 5, tzinfo=UTC), "/twice", event_id="evt-2")
    assert await store(db, [event, event]) == 1
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_the_writer_makes_the_months_ahead(db: asyncpg.Connection) -> None:
    current = datetime.now(UTC).date().replace(day=1)
    ahead = partition_of(add_months(current, AHEAD_MONTHS))
    await db.execute(f"DROP TABLE {ahead}")
    await Partitions().before_batch(db, [])
    names = {row["relname"] for row in await db.fetch("SELECT relname FROM pg_class WHERE relname LIKE 'events_2%'")}
    assert {partition_of(add_months(current, n)) for n in range(AHEAD_MONTHS + 1)} <= names


async def test_the_migration_carries_every_event_into_its_month(postgres_url: str) -> None:
    async with migrated_before(postgres_url, "0010", "partitions") as database:
        connection = await asyncpg.connect(database.url)
        try:
            await connection.execute(
                """INSERT INTO events (event_key, site_id, event_type, path, user_id, visitor, "timestamp")
                   VALUES (md5('1')::uuid, 's', 'page_view', '/1999', 'u1', 'u1', '1999-12-31T23:00:00Z'),
                          (md5('2')::uuid, 's', 'page_view', '/2025', NULL, 'v', '2025-11-12T10:00:00Z'),
                          (md5('3')::uuid, 't', 'click', NULL, NULL, 'w', '2025-11-30T23:59:59Z')"""
            )
            before = await connection.fetch("SELECT * FROM events ORDER BY id")
            database.apply_the_rest()
            after = await connection.fetch("SELECT * FROM events ORDER BY id")
            assert [dict(row) for row in after] == [dict(row) for row in before]
            rows = [(row["partition"], row["path"]) for row in await connection.fetch(WHERE)]
            assert rows == [("events_1999_12", "/1999"), ("events_2025_11", "/2025"), ("events_2025_11", None)]
            keys = await connection.fetch("SELECT site_id, event_key FROM event_keys ORDER BY site_id, event_key")
            assert [tuple(row) for row in keys] == sorted((row["site_id"], row["event_key"]) for row in before)
            new_id = await connection.fetchval(
                """INSERT INTO events (event_key, site_id, event_type, "timestamp")
                   VALUES (md5('4')::uuid, 's', 'click', '2025-11-13T00:00:00Z') RETURNING id"""
            )
            assert new_id == max(row["id"] for row in before) + 1
        finally:
            await connection.close()


async def test_retention_drops_old_months_keeps_the_rollups_and_reports_say_so(
    client_with: Client, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=400), now - timedelta(days=3)
    events = [
        page_view("s", old, "/old"),
        page_view("s", old + timedelta(minutes=1), "/old2"),
        page_view("s", recent, "/new"),
    ]
    assert await store(db, events) == 3
    queries = [
        ("/api/reporting/stats", {"site_id": "s"}),
        ("/api/reporting/stats", {"site_id": "s", "date": old.date().isoformat()}),
        ("/api/v2/stats/aggregate", {"site_id": "s", "period": "7d", "date": recent.date().isoformat()}),
    ]
    async with client_with() as client:
        before = [(await client.get(path, params=params)).json() for path, params in queries]
        assert before[2]["data"]["meta"] == {"approximate": False}

        await Partitions(retention_days=365).before_batch(db, [])
        gone = partition_of(old.date())
        assert await db.fetchval("SELECT to_regclass($1)", gone) is None
        since = await db.fetchval("SELECT since FROM events_retention")
        # Every month that ended by a year ago went, the empty ones since the old events' too.
        horizon = (now - timedelta(days=365)).date().replace(day=1)
        assert since == datetime.combine(horizon, datetime.min.time(), UTC)
        assert await db.fetchval("SELECT count(*) FROM events") == 1
        assert await db.fetchval("SELECT count(*) FROM event_keys") == 1

        after = [(await client.get(path, params=params)).json() for path, params in queries]
        assert after[:2] == before[:2]  # v1 stats read the rollups, which stay
        assert after[2]["data"]["results"] == before[2]["data"]["results"]
        assert after[2]["data"]["meta"] == {"approximate": False, "raw_events_since": since.isoformat()}
        # Unfiltered reports read the report cells, which retention keeps: complete, and as they were.
        old_day = {"site_id": "s", "period": "day", "date": old.date().isoformat(), "metrics": "pageviews,visitors"}
        beyond = (await client.get("/api/v2/stats/aggregate", params=old_day)).json()["data"]
        assert beyond["meta"] == {"approximate": False, "raw_events_since": since.isoformat()}
        assert beyond["results"] == {"pageviews": {"value": 2}, "visitors": {"value": 1}}
        everything = (await client.get("/api/v2/stats/aggregate", params={"site_id": "s", "period": "all"})).json()
        assert everything["data"]["meta"] == {"approximate": False, "raw_events_since": since.isoformat()}
        assert everything["data"]["results"]["pageviews"] == {"value": 3}
        # Filtered ones read raw events, and say what they miss.
        filtered = (await client.get("/api/v2/stats/aggregate", params={**old_day, "filters": "path~/"})).json()
        assert filtered["data"]["meta"] == {
            "approximate": False,
            "raw_events_since": since.isoformat(),
            "incomplete": True,
        }
        assert filtered["data"]["results"]["pageviews"] == {"value": 0}
        cells = await db.fetch("SELECT * FROM report_cells ORDER BY cell")

    # A re-delivery of a dropped event is a new event; it goes to the default partition and the next pass drops it.
    assert await store(db, [events[0]], Partitions(retention_days=365)) == 1
    assert await db.fetchval("SELECT tableoid::regclass::text FROM events WHERE path = '/old'") == "events_default"
    await Partitions(retention_days=365).before_batch(db, [])
    assert await db.fetchval("SELECT count(*) FROM events WHERE path = '/old'") == 0
    assert await db.fetchval("SELECT count(*) FROM event_keys") == 1
    # ... and the report cells, which counted it once, do not count it again.
    assert await db.fetch("SELECT * FROM report_cells ORDER BY cell") == cells
