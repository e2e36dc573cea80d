"""Crashes and outages with real processes: every event answered 202 is stored exactly once.

Each test ends in exact count comparisons over event numbers:
- lost = accepted - stored must be empty (an event answered 202 is stored);
- invented = stored - sent must be empty (nothing is stored that was not sent);
- rows == distinct events (checked inside `Stack.stored_numbers`: no duplicates);
and, where writers are killed, race or lose PostgreSQL, the rollups, visits and report cells equal a recount of the
stored events.
"""

from __future__ import annotations

import asyncio
import random
import time

import asyncpg
import pytest
import redis.asyncio as aioredis

from analytics.events.contract import decode_event
from analytics.events.record import Event, encode_event
from analytics.queue.dead_letters import decode_dead_letter
from tests.helpers.backends import PostgresServer, ValkeyServer
from tests.helpers.factories import RECEIVED_US, event_for, queued
from tests.helpers.load import Load, accepted_at_least, assert_exact, load_while
from tests.helpers.processes import log_settled
from tests.helpers.rollups import assert_rollups_recount_events
from tests.helpers.stack import Stack, drained
from tests.integration.test_visits import sessions, stored_visits

pytestmark = pytest.mark.faults


async def assert_counted_exactly(stack: Stack) -> None:
    """The rollups and cells are a recount of the stored events and the visits a sessionization of them, whatever the
    kills, races or outages interrupted (each batch counts what it stored in its own transaction)."""
    db = await asyncpg.connect(stack.database_url)
    try:
        await assert_rollups_recount_events(db)
        by_site = 'SELECT visitor, "timestamp", event_type, path FROM events WHERE site_id = $1'
        for site_id in [row["site_id"] for row in await db.fetch("SELECT DISTINCT site_id FROM events")]:
            assert await stored_visits(db, site_id) == sessions(list(await db.fetch(by_site, site_id))), site_id
    finally:
        await db.close()


async def test_writer_killed_ten_times_under_load_loses_and_duplicates_nothing(
    stack: Stack, fault_redis: aioredis.Redis
) -> None:
    api = stack.role("api").start()
    writer = stack.role("writer").start()
    await api.healthy()
    load = Load(api.base_url)
    kills_done = asyncio.Event()
    running = await load_while(load, kills_done, at_least=20_000)
    for _ in range(10):
        await asyncio.sleep(random.uniform(0.3, 1.2))
        writer.kill()
        writer = stack.role("writer").start()
    kills_done.set()
    await asyncio.wait_for(running, 120)

    stored = await drained(stack, fault_redis, load.accepted)
    assert len(load.sent) >= 20_000
    assert load.numbers(None) == set(), "the api was never disturbed: no request may fail"
    assert stored == load.accepted, f"stored {len(stored)} != accepted {len(load.accepted)}"
    assert await stack.queue_state(fault_redis) == (0, 0, 0)
    await assert_counted_exactly(stack)


async def test_postgres_down_for_ten_seconds_ingestion_goes_on_and_nothing_is_lost(
    stack: Stack, fault_redis: aioredis.Redis, fault_postgres: PostgresServer
) -> None:
    api = stack.role("api").start()
    writer = stack.role("writer").start()
    await api.healthy()
    load = Load(api.base_url, concurrency=8)
    done = asyncio.Event()
    running = await load_while(load, done)
    await asyncio.sleep(1)
    fault_postgres.stop()
    stopped_at = time.monotonic()
    try:
        await asyncio.sleep(10)
    finally:
        restarted_at = time.monotonic()
        fault_postgres.start()
    await asyncio.sleep(1)
    done.set()
    await asyncio.wait_for(running, 60)

    during = [answer for answer in load.answers if stopped_at < answer.sent_at and answer.answered_at < restarted_at]
    assert len(during) > 100
    assert [answer.status for answer in during if answer.status != 202] == [], "ingestion must not depend on PostgreSQL"
    stored = await drained(stack, fault_redis, load.accepted)
    assert stored == load.accepted, f"stored {len(stored)} != accepted {len(load.accepted)}"
    assert await stack.queue_state(fault_redis) == (0, 0, 0)
    await assert_counted_exactly(stack)
    log = await log_settled(writer, "postgresql unavailable", "postgresql available again")
    assert log.count(" started") == 2, "ANALYTICS_WRITER_CONCURRENCY defaults to 2"


async def test_redis_down_means_503_never_202_and_202_again_when_it_returns(
    stack: Stack, fault_valkey: ValkeyServer, fault_redis: aioredis.Redis
) -> None:
    api = stack.role("api").start()
    writer = stack.role("writer").start()
    await api.healthy()
    load = Load(api.base_url, concurrency=8)
    done = asyncio.Event()
    running = await load_while(load, done)
    await asyncio.sleep(1)
    fault_valkey.stop()
    stopped_at = time.monotonic()
    try:
        await asyncio.sleep(3)
    finally:
        restarted_at = time.monotonic()
        fault_valkey.start()
    await asyncio.sleep(2)
    done.set()
    await asyncio.wait_for(running, 60)

    during = [answer for answer in load.answers if stopped_at < answer.sent_at and answer.answered_at < restarted_at]
    statuses_during = {answer.status for answer in during}
    assert statuses_during == {503}, f"while Redis was down the api answered {statuses_during}"
    after = [answer for answer in load.answers if answer.sent_at > restarted_at + 0.5]
    assert after
    assert {answer.status for answer in after} == {202}, "the api must recover without a restart"
    stored = await drained(stack, fault_redis, load.accepted)
    assert_exact(load, stored)
    # A push whose reply was lost when Redis went down is answered 503 yet may be stored: that is the only way a
    # refused event may appear, and only among pushes in flight at the moment of the stop.
    refused_but_stored = {answer.number for answer in load.answers if answer.status == 503 and answer.number in stored}
    assert all(answer.sent_at <= stopped_at for answer in load.answers if answer.number in refused_but_stored), (
        "an event refused after Redis was down cannot be stored"
    )
    api_log = api.log()
    assert (api_log.count("redis unavailable"), api_log.count("redis available again")) == (1, 1), api_log
    await log_settled(writer, "redis unavailable", "redis available again")


async def test_three_writers_on_fifty_thousand_events_with_ten_percent_duplicates(
    stack: Stack, fault_redis: aioredis.Redis
) -> None:
    distinct = [encode_event(queued(decode_event(_json(event_for(number)), RECEIVED_US))) for number in range(45_000)]
    duplicates = random.Random(7).sample(distinct, 5_000)
    records = distinct + duplicates
    random.Random(8).shuffle(records)
    for start in range(0, len(records), 1000):
        await fault_redis.rpush(stack.keys.queue, *records[start : start + 1000])
    for _ in range(3):
        stack.role("writer").start()

    stored = await drained(stack, fault_redis, set(range(45_000)))
    assert stored == set(range(45_000))
    assert await stack.queue_state(fault_redis) == (0, 0, 0)
    await assert_counted_exactly(stack)  # three writers' batches overlapping, counted each in its transaction
    for process in stack.processes:
        assert "Deadlock" not in process.log()
        assert "stopped unexpectedly" not in process.log()


async def test_poison_record_is_dead_lettered_and_its_batch_is_stored(
    stack: Stack, fault_redis: aioredis.Redis
) -> None:
    good = [encode_event(queued(decode_event(_json(event_for(number)), RECEIVED_US))) for number in range(1000)]
    poison = encode_event(Event("faults", "page_view", "/nul\x00", "poison", 0))
    await fault_redis.rpush(stack.keys.queue, *good[:500], poison, *good[500:])
    stack.role("writer").start()

    stored = await drained(stack, fault_redis, set(range(1000)))
    assert stored == set(range(1000))
    [letter] = [decode_dead_letter(entry) for entry in await fault_redis.lrange(stack.keys.dead, 0, -1)]
    assert letter.data == poison
    assert letter.reason.startswith("rejected by PostgreSQL: CharacterNotInRepertoireError")


async def test_sigterm_under_load_loses_nothing_answered_202(stack: Stack, fault_redis: aioredis.Redis) -> None:
    api = stack.role("api").start()
    writer = stack.role("writer").start()
    await api.healthy()
    load = Load(api.base_url)
    done = asyncio.Event()
    running = await load_while(load, done)
    await accepted_at_least(load, 1000)
    assert await writer.terminate() == 0
    stack.role("writer").start()
    await accepted_at_least(load, 2000)
    assert await api.terminate() == 0
    done.set()
    await asyncio.wait_for(running, 60)

    stored = await drained(stack, fault_redis, load.accepted)
    assert len(load.accepted) >= 2000
    assert_exact(load, stored)
    assert await stack.queue_state(fault_redis) == (0, 0, 0)


def _json(document: dict[str, object]) -> bytes:
    import msgspec

    return msgspec.json.encode(document)
