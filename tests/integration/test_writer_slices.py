"""The slices of a writer process (writer/slices.py) against real PostgreSQL: the visit lock a batch takes is its
sites' buckets as the slices compute them, so a batch of one slice never waits for one of another slice, while two
batches of sites in one bucket still wait for each other; and a writer of several slices stores and counts each
event once, re-delivered or not."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from analytics.config import Settings
from analytics.events.record import Event, encode_event
from analytics.observability.metrics import Metrics
from analytics.queue.consumer import WriterQueue
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import Pusher
from analytics.store.events import EventStore, merge, prepare
from analytics.store.partitions import Partitions
from analytics.writer.loop import Writer, new_writer_id
from analytics.writer.slices import Slices, site_bucket
from tests.helpers.waiting import eventually

T0 = 1_762_975_801_000_000  # 2025-11-12T19:30:01Z in microseconds
VISITORS = 2_000  # enough that two sites' visitors would share some of 1,024 per-visitor buckets


def batch(site: str, count: int = VISITORS) -> list[Event]:
    """A page view of each of `count` visitors, on the same day and paths whatever the site."""
    return [
        Event(site, "page_view", f"/p{n % 7}", f"u{n}", T0 + n * 1_000, 0, event_id=f"{site}-{n}", visitor=f"v{n}")
        for n in range(count)
    ]


def site_with(bucket_parity: int | None = None, bucket: int | None = None, *, besides: str = "") -> str:
    """The first site name whose lock bucket has that parity (the slice of two) or is that bucket."""
    for number in itertools.count():
        site = f"site-{number}"
        if site == besides:
            continue
        if bucket_parity is not None and site_bucket(site) % 2 == bucket_parity:
            return site
        if bucket is not None and site_bucket(site) == bucket:
            return site
    raise AssertionError("unreachable")


@pytest.fixture
async def holder(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A writer's connection, for a batch held open in its transaction."""
    connection = await asyncpg.connect(database_url)
    await prepare(connection)
    yield connection
    await connection.close()


async def held_visit_locks(db: asyncpg.Connection, backend: int) -> set[int]:
    rows = await db.fetch(
        "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = 7020 AND objsubid = 2 AND pid = $1",
        backend,
    )
    return {row["objid"] for row in rows}


async def test_a_batch_locks_its_sites_buckets_as_the_slices_compute_them(
    holder: asyncpg.Connection, db: asyncpg.Connection
) -> None:
    sites = ["a", "site-0", "ünïcode ✓", "x" * 200]
    transaction = holder.transaction()
    await transaction.start()
    try:
        await merge(holder, [event for site in sites for event in batch(site, 20)])  # a savepoint in the held one
        assert await held_visit_locks(db, holder.get_server_pid()) == {site_bucket(site) for site in sites}
    finally:
        await transaction.rollback()


async def test_a_batch_of_another_slice_does_not_wait_and_one_of_the_same_bucket_does(
    holder: asyncpg.Connection, database_url: str, db: asyncpg.Connection
) -> None:
    held_site = site_with(bucket_parity=0)
    other_slice = site_with(bucket_parity=1)
    same_bucket = site_with(bucket=site_bucket(held_site), besides=held_site)
    # The month's partition made first, as the writer makes it before a batch (not inside one held open).
    await Partitions(0).before_batch(holder, batch(held_site, 1))
    transaction = holder.transaction()
    await transaction.start()
    committed = False
    await merge(holder, batch(held_site))  # a savepoint in the held transaction
    other, same = EventStore(database_url), EventStore(database_url)
    try:
        # Same day, same paths, 2,000 visitors each: only the site differs.
        assert await asyncio.wait_for(other.write(batch(other_slice)), timeout=15) == VISITORS
        waiting = asyncio.create_task(same.write(batch(same_bucket)))
        await asyncio.sleep(1.0)
        assert not waiting.done(), "a batch of a site in the held bucket went ahead"
        await transaction.commit()
        committed = True
        assert await asyncio.wait_for(waiting, timeout=15) == VISITORS
    finally:
        if not committed:
            await transaction.rollback()
        await other.close()
        await same.close()
    visits = await db.fetch("SELECT site_id, count(*) AS visits FROM visits GROUP BY site_id ORDER BY site_id")
    assert {row["site_id"]: row["visits"] for row in visits} == dict.fromkeys(
        (held_site, other_slice, same_bucket), VISITORS
    )


async def test_a_writer_of_two_slices_stores_and_counts_each_event_once(
    redis: aioredis.Redis, keys: QueueKeys, database_url: str, db: asyncpg.Connection, settings: Settings
) -> None:
    sites = [site_with(bucket_parity=0), site_with(bucket_parity=1)]
    sites += [site_with(bucket_parity=0, besides=sites[0])]
    events = [event for site in sites for event in batch(site, 300)]
    records = [encode_event(event) for event in events]
    pusher = Pusher(redis, keys, max_length=100_000)
    slices = Slices([EventStore(database_url), EventStore(database_url)])
    lanes = [Writer(settings, slices, WriterQueue(redis, keys, new_writer_id(), 2), Metrics()) for _ in range(2)]
    running = [asyncio.create_task(lane.run()) for lane in lanes]
    try:
        for start in range(0, len(records), 100):
            await pusher.push(records[start : start + 100])
        await pusher.push(records[:450])  # delivered again, after and alongside the first

        async def all_stored_and_drained() -> None:
            assert await db.fetchval("SELECT count(*) FROM events") == len(events)
            assert await redis.llen(keys.queue) == 0

        await eventually(all_stored_and_drained, timeout_s=30)
    finally:
        for lane in lanes:
            lane.stop()
        await asyncio.gather(*running)
    assert sum(lane.stored for lane in lanes) == len(events)
    totals = await db.fetch("SELECT site_id, views, users FROM daily_totals ORDER BY site_id")
    assert [(row["site_id"], row["views"], row["users"]) for row in totals] == [
        (site, 300, 300) for site in sorted(sites)
    ]
    cells = await db.fetch(
        "SELECT site_id, sum(pageviews) AS views, sum(visits) AS visits FROM report_cells GROUP BY 1"
    )
    assert {row["site_id"]: (row["views"], row["visits"]) for row in cells} == dict.fromkeys(sites, (300, 300))
