"""The sharded queue against real Redis and PostgreSQL: pushes spread over shards, writer lanes take turns on them
under leases, recovery and dead letters per shard, an upgrade from the unsharded keys, a lowered shard count."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
import redis.asyncio as aioredis

from analytics.config import Settings
from analytics.errors import QueueFull
from analytics.events.record import Event, encode_event
from analytics.observability.metrics import Metrics
from analytics.queue.client import snapshot
from analytics.queue.consumer import WriterQueue
from analytics.queue.dead_letters import decode_dead_letter
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import Pusher
from analytics.queue.shards import known_shards
from analytics.store.events import EventStore
from analytics.writer.loop import Writer, new_writer_id
from analytics.writer.slices import Slices
from tests.helpers.waiting import eventually

T0 = 1_762_975_801_000_000  # 2025-11-12T19:30:01Z in microseconds


def record(n: int, path: str = "/p") -> bytes:
    return encode_event(Event("s", "page_view", path, f"u{n}", T0 + n))


async def lengths(redis: aioredis.Redis, keys: QueueKeys, shards: int) -> list[int]:
    return [await redis.llen(keys.of_shard(shard).queue) for shard in range(shards)]


async def stored_users(db: asyncpg.Connection) -> list[str]:
    return sorted(await db.fetchval("SELECT coalesce(array_agg(user_id), '{}') FROM events"))


@asynccontextmanager
async def writers(
    settings: Settings, database_url: str, redis: aioredis.Redis, keys: QueueKeys, lanes: int = 1
) -> AsyncIterator[list[WriterQueue]]:
    """`lanes` writer lanes in this event loop, as `serve --role writer` runs them; stopped cleanly on exit."""
    queues = [
        WriterQueue(redis, keys, new_writer_id(), settings.heartbeat_ttl_s, settings.queue_shards) for _ in range(lanes)
    ]
    running = [Writer(settings, Slices([EventStore(database_url)]), queue, Metrics()) for queue in queues]
    tasks = [asyncio.create_task(writer.run()) for writer in running]
    try:
        yield queues
    finally:
        for writer in running:
            writer.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def until(check: Callable[[], Awaitable[None]], timeout_s: float = 10) -> None:
    await eventually(check, timeout_s)


async def test_each_flush_goes_to_the_next_shard(redis: aioredis.Redis, keys: QueueKeys) -> None:
    pusher = Pusher(redis, keys, 10**9, shards=4)
    for n in range(40):
        await pusher.push([b"%d" % n, b"%d" % n])
    assert await lengths(redis, keys, 4) == [20, 20, 20, 20]
    # Concurrent requests are still coalesced, each flush into one shard: few pushes, all of a request in one shard.
    await asyncio.gather(*[pusher.push([b"a%d" % n, b"b%d" % n]) for n in range(300)])
    per_shard = await lengths(redis, keys, 4)
    assert sum(per_shard) == 80 + 600
    for shard in range(4):
        queued = await redis.lrange(keys.of_shard(shard).queue, 0, -1)
        assert all(queued[queued.index(b"a%d" % n) + 1] == b"b%d" % n for n in range(300) if b"a%d" % n in queued)
    assert await known_shards(redis, keys, 1) == 4, "the first push recorded the shards it may use"


async def test_one_shard_pushes_to_the_unsharded_queue_key(redis: aioredis.Redis, keys: QueueKeys) -> None:
    await Pusher(redis, keys, 10**9).push([b"x"])
    assert await redis.lrange(f"{{{keys.prefix}}}:queue", 0, -1) == [b"x"]
    assert [key async for key in redis.scan_iter(match=f"{{{keys.prefix}:*")] == []


async def test_the_cap_is_on_all_shards_together(redis: aioredis.Redis, keys: QueueKeys) -> None:
    pusher = Pusher(redis, keys, max_length=10, shards=4)
    for _ in range(4):
        await pusher.push([b"r"] * 3)  # 3 in each shard, 12 in all: every shard is under 10
    with pytest.raises(QueueFull):
        await pusher.push([b"r"])
    assert sum(await lengths(redis, keys, 4)) == 12


async def test_records_in_every_shard_are_stored_once_by_fewer_lanes_than_shards(
    settings: Settings, database_url: str, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection
) -> None:
    """Eight shards, two lanes: lanes take turns, every shard is drained, a record delivered twice is stored once."""
    settings = Settings(batch_size=7, flush_interval_ms=5, heartbeat_ttl_s=2, queue_shards=8)
    for shard in range(8):
        batch = [record(shard * 100 + n) for n in range(20)]
        await redis.rpush(keys.of_shard(shard).queue, *batch, batch[0])
    async with writers(settings, database_url, redis, keys, lanes=2):

        async def drained() -> None:
            assert await lengths(redis, keys, 8) == [0] * 8
            assert len(await stored_users(db)) == 160

        await until(drained)
    assert await stored_users(db) == sorted(f"u{shard * 100 + n}" for shard in range(8) for n in range(20))
    assert [key async for key in redis.scan_iter(match=f"{{{keys.prefix}*:processing:*")] == []
    assert [key async for key in redis.scan_iter(match=f"{{{keys.prefix}*:lease")] == [], "released on stop"
    assert [key async for key in redis.scan_iter(match=f"{{{keys.prefix}*:heartbeat:*")] == [], "retired on stop"


async def test_a_lease_is_one_lanes_until_released_or_expired(redis: aioredis.Redis, keys: QueueKeys) -> None:
    first = WriterQueue(redis, keys, "first", heartbeat_ttl_s=2, shards=1)
    second = WriterQueue(redis, keys, "second", heartbeat_ttl_s=2, shards=1)
    await redis.rpush(keys.queue, b"r")
    await first.take_turn()
    assert (first.shard, first.leased) == (0, True)
    assert await redis.get(keys.lease) == b"first"
    await second.take_turn()
    assert (second.shard, second.leased) == (0, False), "a leased shard holding records is helped, not taken"
    await second.end_turn()
    assert await redis.get(keys.lease) == b"first", "a lane never drops another's lease"
    await redis.pexpire(keys.lease, 1)  # `first` stopped renewing: its lease runs out
    await asyncio.sleep(0.01)
    await second.take_turn()
    assert second.leased
    assert await redis.get(keys.lease) == b"second"
    await first.end_turn()
    assert await redis.get(keys.lease) == b"second", "a lane whose lease ran out never drops its successor's"
    await redis.pexpire(keys.lease, 1)  # now `second` stops renewing
    await asyncio.sleep(0.01)
    third = WriterQueue(redis, keys, "third", heartbeat_ttl_s=2, shards=1)
    await third.take_turn()
    assert third.leased
    await second.heartbeat()
    assert not second.leased, "a renewal finds the lease taken over and gives it up"
    assert await redis.get(keys.lease) == b"third"
    assert 0 < await redis.pttl(keys.lease) <= 2000
    await third.end_turn()
    assert await redis.exists(keys.lease) == 0


async def test_a_lane_registers_in_a_shard_before_it_can_hold_records_there(
    redis: aioredis.Redis, keys: QueueKeys
) -> None:
    lane = WriterQueue(redis, keys, "lane", heartbeat_ttl_s=2, shards=4)
    await redis.rpush(keys.of_shard(2).queue, b"r")
    await lane.take_turn()
    assert lane.shard == 2
    shard = keys.of_shard(2)
    assert await redis.sismember(shard.writers, "lane")
    assert await redis.exists(shard.heartbeat("lane"))
    assert await lane.claim(10) == [b"r"]
    assert await redis.lrange(shard.processing("lane"), 0, -1) == [b"r"]


async def test_a_dead_lanes_processing_list_is_recovered_into_its_own_shard(
    redis: aioredis.Redis, keys: QueueKeys
) -> None:
    crashed = WriterQueue(redis, keys, "crashed", heartbeat_ttl_s=2, shards=4)
    survivor = WriterQueue(redis, keys, "survivor", heartbeat_ttl_s=2, shards=4)
    shard = keys.of_shard(3)
    await redis.rpush(shard.queue, b"a", b"b", b"c")
    await crashed.take_turn()
    assert crashed.shard == 3
    assert await crashed.claim(2) == [b"a", b"b"]
    assert await survivor.recover_orphans() == 0, "a live lane's batch is left alone"
    await redis.pexpire(shard.heartbeat("crashed"), 1)
    await asyncio.sleep(0.05)
    assert await survivor.recover_orphans() == 2
    assert sorted(await redis.lrange(shard.queue, 0, -1)) == [b"a", b"b", b"c"]
    assert await redis.exists(shard.processing("crashed")) == 0
    assert await redis.smembers(shard.writers) == set()
    assert await redis.llen(keys.queue) == 0, "shard 0 is not where they came from"


async def test_dead_letters_go_to_the_shard_the_record_came_from(
    database_url: str, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection
) -> None:
    settings = Settings(batch_size=100, flush_interval_ms=5, heartbeat_ttl_s=2, queue_shards=3)
    poison = record(1, path="nul\x00byte")
    await redis.rpush(keys.of_shard(2).queue, record(2), poison)
    async with writers(settings, database_url, redis, keys):

        async def stored() -> None:
            assert await stored_users(db) == ["u2"]
            assert await redis.llen(keys.of_shard(2).dead) == 1

        await until(stored)
    [letter] = [decode_dead_letter(entry) for entry in await redis.lrange(keys.of_shard(2).dead, 0, -1)]
    assert letter.data == poison
    assert await redis.llen(keys.dead) == await redis.llen(keys.of_shard(1).dead) == 0


async def test_an_upgrade_writes_what_the_unsharded_version_left_in_redis(
    database_url: str, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection
) -> None:
    """The previous version's keys, written as it wrote them: a queue, and the processing list of a writer that was
    killed (registered, heartbeat expired). The new writers, with one shard and with four, store both."""
    await redis.rpush(f"{{{keys.prefix}}}:queue", *[record(n) for n in range(30)])
    await redis.rpush(f"{{{keys.prefix}}}:processing:old-host-1-abcdef", *[record(n) for n in range(30, 40)])
    await redis.sadd(f"{{{keys.prefix}}}:writers", "old-host-1-abcdef")
    for shards in (1, 4):
        settings = Settings(batch_size=8, flush_interval_ms=5, heartbeat_ttl_s=2, queue_shards=shards)
        async with writers(settings, database_url, redis, keys, lanes=2):

            async def stored() -> None:
                assert len(await stored_users(db)) == 40

            await until(stored)
        assert await stored_users(db) == sorted(f"u{n}" for n in range(40))
        assert await redis.exists(f"{{{keys.prefix}}}:queue", f"{{{keys.prefix}}}:processing:old-host-1-abcdef") == 0
        assert await redis.smembers(f"{{{keys.prefix}}}:writers") == set()
        await db.execute("TRUNCATE events, event_keys")
        await redis.rpush(f"{{{keys.prefix}}}:queue", *[record(n) for n in range(40)])
        await redis.rpush(f"{{{keys.prefix}}}:processing:old-host-1-abcdef", record(0))
        await redis.sadd(f"{{{keys.prefix}}}:writers", "old-host-1-abcdef")


async def test_a_lowered_shard_count_still_drains_the_higher_shards(
    database_url: str, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """An api ran with 6 shards; the operator restarts everything with 2. Records in shards 2-5 are not stranded:
    the writers cover every shard ever recorded, and the api says so once."""
    wide = Pusher(redis, keys, 10**9, shards=6)
    for n in range(6):
        await wide.push([record(n)])
    assert sum(await lengths(redis, keys, 6)) == 6
    assert await redis.llen(keys.of_shard(5).queue) == 1
    narrow = Pusher(redis, keys, 10**9, shards=2)
    with caplog.at_level(logging.WARNING, logger="analytics.queue.pusher"):
        await narrow.push([record(6)])
        await narrow.push([record(7)])
    assert [r.getMessage() for r in caplog.records] == [
        "ANALYTICS_QUEUE_SHARDS is 2 but 6 shards have been used: pushes go to the first 2, writers keep draining all 6"
    ]
    assert sum(await lengths(redis, keys, 2)) == 4
    settings = Settings(batch_size=100, flush_interval_ms=5, heartbeat_ttl_s=2, queue_shards=2)
    async with writers(settings, database_url, redis, keys) as [lane]:

        async def stored() -> None:
            assert await stored_users(db) == [f"u{n}" for n in range(8)]

        await until(stored)
        assert lane.shard_count == 6
    assert await lengths(redis, keys, 6) == [0] * 6


async def test_the_scrape_sums_the_shards_and_counts_each(redis: aioredis.Redis, keys: QueueKeys) -> None:
    pusher = Pusher(redis, keys, 10**9, shards=3)
    for size in (1, 2, 3, 4):
        await pusher.push([b"r"] * size)
    lane = WriterQueue(redis, keys, "lane", heartbeat_ttl_s=2, shards=3)
    await lane.take_turn()
    claimed = len(await lane.claim(100))
    await lane.dead_letter([(b"x", "r")])
    state = await snapshot(redis, keys)  # one shard configured here: the recorded three are read
    depths = list(await lengths(redis, keys, 3))
    assert state.shard_depths == tuple(depths)
    assert state.queued == sum(depths) == 10 - claimed
    assert state.processing == {"lane": claimed}
    assert (state.dead, state.writers_alive) == (1, 1)
