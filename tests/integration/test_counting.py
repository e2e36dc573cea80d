"""Counting out of the batch (migrations/0013.uncounted_events.sql): a writer's batch stores events and lists them as
uncounted; a counting step counts many batches' events into the rollups, visits and report cells and deletes them
from the list, in one transaction. A crash at any statement of either loses nothing and counts nothing twice; steps
take turns; the counting lane keeps up with writer lanes; a rollback is refused while events wait to be counted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from msgspec.structs import replace

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.observability.metrics import Metrics
from analytics.store import queries
from analytics.store.events import (
    COUNTING_BUCKETS,
    STAGING_COLUMNS,
    STAGING_TABLE,
    EventStore,
    count_pending,
    prepare,
    staging_rows,
)
from analytics.writer.counting import CountingLane
from tests.helpers.rollups import assert_rollups_recount_events
from tests.helpers.storing import count_all_pending, store_and_count
from tests.helpers.waiting import eventually
from tests.integration.test_visits import sessions, stored_visits

START = datetime(2025, 11, 12, 23, 40, tzinfo=UTC)  # batches cross midnight: two days' rollups


def batch(first: int, count: int, sites: int = 1) -> list[Event]:
    """Page views and clicks of a few visitors and users, minutes apart, some of them extending earlier visits."""
    return [
        Event(
            "c" if sites == 1 else f"site{number % sites}",
            "page_view" if number % 3 else "click",
            f"/p{number % 4}",
            f"u{number % 3}" if number % 2 else None,
            epoch_microseconds(START + timedelta(minutes=7 * number, microseconds=number)),
            0,
            event_id=f"e{number}",
            visitor=f"v{number % 5}",
        )
        for number in range(first, first + count)
    ]


async def assert_counted_exactly(db: asyncpg.Connection) -> None:
    assert await db.fetchval("SELECT count(*) FROM uncounted_events") == 0
    await assert_rollups_recount_events(db)
    by_site = 'SELECT visitor, "timestamp", event_type, path FROM events WHERE site_id = $1'
    for site_id in [row["site_id"] for row in await db.fetch("SELECT DISTINCT site_id FROM events")]:
        assert await stored_visits(db, site_id) == sessions(list(await db.fetch(by_site, site_id))), site_id


BATCH_STOPS = ["after COPY", "after store", "after commit"]
COUNT_STOPS = ["after take_uncounted", "after count_rollups", "after rebuild_visits", "after count_cells"]


async def crash(db: asyncpg.Connection, victim: asyncpg.Connection) -> None:
    """What kill -9 of the process does to its transaction: the server ends the backend and rolls it back."""
    pid = victim.get_server_pid()
    assert await db.fetchval("SELECT pg_terminate_backend($1)", pid)
    await eventually(lambda: _gone(db, pid))
    victim.terminate()


async def _gone(db: asyncpg.Connection, pid: int) -> None:
    assert not await db.fetchval("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", pid)


@pytest.mark.parametrize("stop", BATCH_STOPS + COUNT_STOPS)
async def test_a_crash_at_any_statement_loses_nothing_and_counts_nothing_twice(
    db: asyncpg.Connection, database_url: str, stop: str
) -> None:
    """A batch stored and counted before; then a second batch (overlapping the first: a retry) whose writer, or the
    counting step after it, dies at `stop`. The writer's batch is delivered again (it was never acked) and a new
    step counts: the rollups are a recount of the events, the visits a sessionization of them."""
    await prepare(db)
    await store_and_count(db, batch(0, 30))
    second = batch(20, 30)
    lane = await asyncpg.connect(database_url)
    await prepare(lane)
    transaction = lane.transaction()
    await transaction.start()
    await lane.copy_records_to_table(STAGING_TABLE, records=staging_rows(second), columns=STAGING_COLUMNS)
    if stop != "after COPY":
        assert await lane.fetchval(queries.WRITER["store"]) == 20
        if stop != "after store":
            await transaction.commit()
            if stop != "after commit":
                transaction = lane.transaction()
                await transaction.start()
                assert await lane.fetchval(queries.WRITER["try_counting_lock"], 0)
                await lane.execute(queries.WRITER["take_uncounted"], None, 0, 1)  # every bucket's
                assert await lane.fetchval(queries.WRITER["counted_count"]) == 20
                for step in ("count_rollups", "rebuild_visits", "count_cells"):
                    if stop == f"after {step}":
                        break
                    await lane.execute(queries.WRITER[step])
    await crash(db, lane)
    expected_uncounted = 20 if stop in COUNT_STOPS or stop == "after commit" else 0
    assert await db.fetchval("SELECT count(*) FROM uncounted_events") == expected_uncounted
    assert await store_and_count(db, second) == (0 if expected_uncounted else 20)  # the re-delivery
    await assert_counted_exactly(db)
    assert await db.fetchval("SELECT count(*) FROM events") == 50


async def stored_uncounted(db: asyncpg.Connection, events: list[Event]) -> None:
    async with db.transaction():
        await db.copy_records_to_table(STAGING_TABLE, records=staging_rows(events), columns=STAGING_COLUMNS)
        await db.fetchval(queries.WRITER["store"])


async def bucket_of(db: asyncpg.Connection, site_id: str) -> int:
    bucket: int = await db.fetchval("SELECT (hashtext($1) & 2147483647) % $2", site_id, COUNTING_BUCKETS)
    return bucket


async def test_one_step_at_a_time_per_bucket_and_the_next_counts_what_the_first_left(
    db: asyncpg.Connection, database_url: str
) -> None:
    """Site c's events wait in its bucket; another site's in another. While a step holds c's bucket, a second step on
    that bucket counts nothing, and a step on the other bucket counts only the other site, at the same time."""
    await prepare(db)
    for first in range(0, 60, 10):
        await stored_uncounted(db, batch(first, 10))
    buckets = {site: await bucket_of(db, site) for site in ("c", *(f"other{n}" for n in range(20)))}
    other_site = next(site for site, bucket in buckets.items() if bucket != buckets["c"])
    await stored_uncounted(db, [replace(event, site_id=other_site) for event in batch(100, 7)])
    other = await asyncpg.connect(database_url)
    try:
        await prepare(other)
        async with db.transaction():
            assert await db.fetchval(queries.WRITER["try_counting_lock"], buckets["c"])
            assert await count_pending(other, buckets["c"], None) is None, "another step holds the bucket"
            assert await count_pending(other, buckets[other_site], None) == 7, "the other bucket is free"
            assert await db.fetchval("SELECT count(*) FROM uncounted_events") == 60
        assert [await count_pending(other, buckets["c"], 25) for _ in range(4)] == [25, 25, 10, 0]
    finally:
        await other.close()
    await assert_counted_exactly(db)


async def test_the_counting_lane_keeps_up_with_writer_lanes_storing_at_once(
    db: asyncpg.Connection, database_url: str
) -> None:
    """Three connections store overlapping batches of six sites concurrently (two lanes and a retry of each); two
    counting lanes count as they go, side by side on different buckets. When the stores end and the lanes have caught
    up, every count is exact."""
    counting = [CountingLane(EventStore(database_url), Metrics(), interval_s=0.01) for _ in range(2)]
    running = [asyncio.create_task(lane.run()) for lane in counting]
    lanes = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        for lane in lanes:
            await prepare(lane)

        async def store_all(lane: asyncpg.Connection, firsts: range) -> None:
            for first in firsts:
                async with lane.transaction():
                    rows = staging_rows(batch(first, 15, sites=6))
                    await lane.copy_records_to_table(STAGING_TABLE, records=rows, columns=STAGING_COLUMNS)
                    await lane.fetchval(queries.WRITER["store"])

        firsts = [range(0, 300, 30), range(15, 300, 30), range(5, 300, 10)]  # the third overlaps both: retries
        await asyncio.gather(*[store_all(lane, mine) for lane, mine in zip(lanes, firsts, strict=True)])

        async def caught_up() -> None:
            assert await db.fetchval("SELECT count(*) FROM uncounted_events") == 0

        await eventually(caught_up)
    finally:
        for lane in counting:
            lane.stop()
        await asyncio.wait_for(asyncio.gather(*running), 10)
        for lane in lanes:
            await lane.close()
    sent = {number for mine in firsts for first in mine for number in range(first, first + 15)}
    assert await db.fetchval("SELECT count(*) FROM events") == len(sent)
    assert sum(lane.counted for lane in counting) == len(sent)
    await assert_counted_exactly(db)


async def test_a_rollback_of_the_migration_is_refused_while_events_wait_to_be_counted(db: asyncpg.Connection) -> None:
    rollback = (Path(__file__).parents[2] / "migrations" / "0013.uncounted_events.rollback.sql").read_text()
    await prepare(db)
    async with db.transaction():
        await db.copy_records_to_table(STAGING_TABLE, records=staging_rows(batch(0, 3)), columns=STAGING_COLUMNS)
        await db.fetchval(queries.WRITER["store"])
    with pytest.raises(asyncpg.RaiseError, match="let the writers count them"):
        await db.execute(rollback)
    await count_all_pending(db)
    await db.execute(rollback)
    assert await db.fetchval("SELECT to_regclass('uncounted_events')") is None
