"""The writer and the queue protocol against real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis.asyncio as aioredis

from analytics.config import Settings
from analytics.events.record import Event, encode_event
from analytics.observability.metrics import Metrics
from analytics.queue.consumer import WriterQueue
from analytics.queue.dead_letters import decode_dead_letter
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import PUSH_CHUNK, Pusher
from analytics.store.events import EventStore
from analytics.writer.loop import Writer, new_writer_id
from analytics.writer.slices import Slices
from tests.helpers.waiting import eventually

T0 = 1_762_975_801_000_000  # 2025-11-12T19:30:01Z in microseconds


def record(n: int = 0, path: str | None = "/p") -> bytes:
    return encode_event(Event("s", "page_view", path, "u", T0 + n))


async def rows(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM events")
    return count


async def until_stored(db: asyncpg.Connection, expected: int) -> None:
    async def check() -> None:
        assert await rows(db) == expected

    await eventually(check)


async def test_same_record_delivered_twice_is_stored_once(
    writer: Writer, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection
) -> None:
    data = record()
    await redis.rpush(keys.queue, data)
    await until_stored(db, 1)
    await redis.rpush(keys.queue, data, data)
    await eventually(lambda: _queue_drained(redis, keys))
    await asyncio.sleep(0.1)
    assert await rows(db) == 1


async def _queue_drained(redis: aioredis.Redis, keys: QueueKeys) -> None:
    assert await redis.llen(keys.queue) == 0
    assert [key async for key in redis.scan_iter(match=f"{{{keys.prefix}}}:processing:*")] == []


async def test_batch_is_committed_then_acked(
    writer: Writer, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection
) -> None:
    await redis.rpush(keys.queue, *[record(n) for n in range(1200)])
    await until_stored(db, 1200)
    await eventually(lambda: _queue_drained(redis, keys))
    stored = await db.fetchrow('SELECT min("timestamp") AS first, max("timestamp") AS last FROM events')
    assert (stored["last"] - stored["first"]).total_seconds() == pytest.approx(1199e-6)


async def test_poison_records_are_dead_lettered_and_the_rest_of_the_batch_is_stored(
    writer: Writer, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection
) -> None:
    good = [record(n) for n in range(40)]
    rejected_by_postgres = record(999, path="nul\x00byte")
    undecodable = b"\x93not a record"
    await redis.rpush(keys.queue, *good[:20], rejected_by_postgres, undecodable, *good[20:])
    await until_stored(db, 40)
    dead = [decode_dead_letter(entry) for entry in await redis.lrange(keys.dead, 0, -1)]
    assert sorted(letter.data for letter in dead) == sorted([rejected_by_postgres, undecodable])
    reasons = {letter.data: letter.reason for letter in dead}
    assert reasons[undecodable].startswith("undecodable record")
    assert reasons[rejected_by_postgres].startswith("rejected by PostgreSQL")
    assert all(letter.failed_at.tzinfo is not None for letter in dead)
    await eventually(lambda: _queue_drained(redis, keys))


async def test_full_batch_is_written_without_waiting_for_the_interval(
    database_url: str, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection
) -> None:
    settings = Settings(batch_size=50, flush_interval_ms=60_000, heartbeat_ttl_s=2)
    writer = Writer(
        settings, Slices([EventStore(database_url)]), WriterQueue(redis, keys, new_writer_id(), 2), Metrics()
    )
    task = asyncio.create_task(writer.run())
    try:
        await redis.rpush(keys.queue, *[record(n) for n in range(50)])
        await eventually(lambda: until_stored(db, 50), timeout_s=10)
    finally:
        writer.stop()
        await asyncio.wait_for(task, 10)


async def test_partial_batch_is_written_after_the_interval(
    database_url: str, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection
) -> None:
    settings = Settings(batch_size=10_000, flush_interval_ms=200, heartbeat_ttl_s=2)
    writer = Writer(
        settings, Slices([EventStore(database_url)]), WriterQueue(redis, keys, new_writer_id(), 2), Metrics()
    )
    task = asyncio.create_task(writer.run())
    try:
        await redis.rpush(keys.queue, *[record(n) for n in range(3)])
        await until_stored(db, 3)
    finally:
        writer.stop()
        await asyncio.wait_for(task, 10)


async def test_claim_moves_records_into_the_writers_processing_list(
    writer_queue: WriterQueue, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    await redis.rpush(keys.queue, *[b"%d" % n for n in range(2500)])
    claimed = await writer_queue.claim(2100)
    assert claimed == [b"%d" % n for n in range(2100)]
    assert await redis.lrange(keys.processing(writer_queue.writer_id), 0, -1) == claimed
    assert await redis.llen(keys.queue) == 400
    await writer_queue.ack()
    assert await redis.exists(keys.processing(writer_queue.writer_id)) == 0


async def test_orphaned_processing_list_is_recovered_only_after_its_heartbeat_expires(
    redis: aioredis.Redis, keys: QueueKeys
) -> None:
    crashed = WriterQueue(redis, keys, "crashed", heartbeat_ttl_s=2)
    survivor = WriterQueue(redis, keys, "survivor", heartbeat_ttl_s=2)
    await crashed.heartbeat()
    await redis.rpush(keys.queue, b"a", b"b", b"c")
    assert await crashed.claim(2) == [b"a", b"b"]
    assert await survivor.recover_orphans() == 0, "a live writer's batch is left alone"
    await redis.pexpire(keys.heartbeat("crashed"), 1)
    await asyncio.sleep(0.05)
    assert await survivor.recover_orphans() == 2
    assert sorted(await redis.lrange(keys.queue, 0, -1)) == [b"a", b"b", b"c"]
    assert await redis.exists(keys.processing("crashed")) == 0
    assert await redis.smembers(keys.writers) == set()


async def test_give_back_returns_the_uncommitted_batch(
    writer_queue: WriterQueue, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    await redis.rpush(keys.queue, b"x", b"y")
    await writer_queue.claim(10)
    assert await writer_queue.give_back() == 2
    assert await redis.lrange(keys.queue, 0, -1) == [b"x", b"y"]


async def test_concurrent_pushes_are_coalesced_into_few_round_trips(
    redis: aioredis.Redis, keys: QueueKeys, pusher: Pusher
) -> None:
    before = await _calls(redis, "rpush")
    await asyncio.gather(*[pusher.push([b"%d" % n]) for n in range(300)])
    pushes = await _calls(redis, "rpush") - before
    assert await redis.llen(keys.queue) == 300
    assert 1 <= pushes <= 5, pushes


async def test_pushes_over_one_chunk_go_in_one_transaction(
    redis: aioredis.Redis, keys: QueueKeys, pusher: Pusher
) -> None:
    records = [b"%d" % n for n in range(2 * PUSH_CHUNK + 500)]
    before = await _calls(redis, "exec")
    await pusher.push(records)
    assert await _calls(redis, "exec") - before == 1
    assert await redis.lrange(keys.queue, 0, -1) == records


async def _calls(redis: aioredis.Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_writer_stops_promptly_and_leaves_nothing_in_processing(
    settings: Settings, database_url: str, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    queue = WriterQueue(redis, keys, new_writer_id(), settings.heartbeat_ttl_s)
    writer = Writer(settings, Slices([EventStore(database_url)]), queue, Metrics())
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0.2)
    writer.stop()
    await asyncio.wait_for(task, 2)
    assert await redis.exists(keys.processing(queue.writer_id), keys.heartbeat(queue.writer_id)) == 0
    assert await redis.sismember(keys.writers, queue.writer_id) == 0


async def test_records_left_in_its_processing_list_by_a_failed_claim_are_written_not_acked_away(
    settings: Settings, database_url: str, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection
) -> None:
    """BLMOVE moved a record, then the claim failed: the record sits in processing while the batch in memory is gone."""
    queue = WriterQueue(redis, keys, "resumed", settings.heartbeat_ttl_s)
    stranded = record(1, path="/stranded")
    await redis.rpush(keys.processing("resumed"), stranded)
    await redis.rpush(keys.queue, record(2, path="/next"))
    writer = Writer(settings, Slices([EventStore(database_url)]), queue, Metrics())
    task = asyncio.create_task(writer.run())
    try:
        await until_stored(db, 2)
    finally:
        writer.stop()
        await asyncio.wait_for(task, 10)
    assert sorted(await db.fetchval("SELECT array_agg(path) FROM events")) == ["/next", "/stranded"]
