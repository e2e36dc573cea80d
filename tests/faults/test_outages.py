"""Backends that stop answering without going away, with real processes: a frozen Redis, a read-only PostgreSQL.

Each test ends in the exact comparisons of test_faults.py: every event answered 202 is stored, nothing stored was
not sent, no event is stored twice.
"""

from __future__ import annotations

import asyncio
import re
import time

import asyncpg
import pytest
import redis.asyncio as aioredis

from analytics.errors import QueueUnavailable
from analytics.queue.pusher import Pusher
from tests.helpers.backends import PostgresServer, ValkeyServer
from tests.helpers.load import Load, accepted_at_least, assert_exact, load_while
from tests.helpers.processes import RoleProcess
from tests.helpers.stack import Stack, drained

pytestmark = pytest.mark.faults

ANSWER_BOUND_S = 2.0  # the bound: a request is answered within this while Redis does not answer
FREEZE_S = 6.0  # longer than the Redis client's 5 s socket timeout


async def test_push_waiting_behind_a_stuck_one_gives_up_unsent_and_the_next_push_after_the_thaw_succeeds(
    stack: Stack, fault_valkey: ValkeyServer, fault_redis: aioredis.Redis
) -> None:
    pusher = Pusher(fault_redis, stack.keys, max_length=1000)
    await pusher.push([b"before"])
    fault_valkey.freeze()
    try:
        stuck = asyncio.create_task(pusher.push([b"in flight"]))
        await asyncio.sleep(0.02)  # the first push is on the wire; this one waits for the next
        behind = asyncio.create_task(pusher.push([b"behind"]))
        started = time.monotonic()
        outcomes = await asyncio.wait_for(asyncio.gather(stuck, behind, return_exceptions=True), ANSWER_BOUND_S)
        waited = time.monotonic() - started
    finally:
        fault_valkey.thaw()
    assert [type(outcome) for outcome in outcomes] == [QueueUnavailable, QueueUnavailable]
    assert waited < ANSWER_BOUND_S
    await asyncio.wait_for(pusher.push([b"after"]), ANSWER_BOUND_S)
    queued = await fault_redis.lrange(stack.keys.queue, 0, -1)
    # "in flight" reached Redis before it froze, so Redis may execute it on waking: answered 503, "not confirmed".
    # "behind" was never sent: it can never be queued.
    assert b"behind" not in queued
    assert queued[0] == b"before"
    assert queued[-1] == b"after"


async def test_frozen_redis_is_answered_503_within_two_seconds_and_202_again_once_it_answers(
    stack: Stack, fault_valkey: ValkeyServer, fault_redis: aioredis.Redis
) -> None:
    api = stack.role("api").start()
    stack.role("writer").start()
    await api.healthy()
    load = Load(api.base_url, concurrency=8)
    done = asyncio.Event()
    running = await load_while(load, done)
    await accepted_at_least(load, 500)
    fault_valkey.freeze()
    frozen_at = time.monotonic()
    try:
        await asyncio.sleep(FREEZE_S)
    finally:
        thawed_at = time.monotonic()
        fault_valkey.thaw()
    await asyncio.sleep(2)
    done.set()
    await asyncio.wait_for(running, 60)

    assert load.numbers(None) == set(), "every request gets an answer"
    sent_during = [answer for answer in load.answers if frozen_at < answer.sent_at < thawed_at]
    waits = [round(answer.answered_at - answer.sent_at, 2) for answer in sent_during]
    assert max(waits) < ANSWER_BOUND_S, f"answers took up to {max(waits)} s while Redis was frozen"
    assert len(sent_during) >= 2 * load.concurrency
    in_flight = [answer for answer in load.answers if answer.sent_at <= frozen_at < answer.answered_at]
    assert all(answer.answered_at - frozen_at < ANSWER_BOUND_S for answer in in_flight)
    refused = {answer.status for answer in sent_during if answer.answered_at < thawed_at}
    assert refused == {503}, f"while Redis was frozen the api answered {refused}"
    after = [answer for answer in load.answers if answer.sent_at > thawed_at + 1]
    assert after
    assert {answer.status for answer in after} == {202}, "the api must recover without a restart"

    stored = await drained(stack, fault_redis, load.accepted)
    assert_exact(load, stored)
    assert await stack.queue_state(fault_redis) == (0, 0, 0)
    api_log = api.log()
    assert (api_log.count("redis unavailable"), api_log.count("redis available again")) == (1, 1), api_log


async def set_read_only(server: PostgresServer, read_only: bool) -> None:
    """Server-wide, as a failover or maintenance does: sessions already open turn read-only at their next statement."""
    admin = await asyncpg.connect(server.url)
    try:
        if read_only:
            await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        else:
            await admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()


async def test_read_only_postgres_is_waited_out_the_api_keeps_ingesting_and_nothing_is_lost(
    stack: Stack, fault_postgres: PostgresServer, fault_redis: aioredis.Redis
) -> None:
    service = stack.role("all").start()
    await service.healthy()
    load = Load(service.base_url, concurrency=8)
    done = asyncio.Event()
    running = await load_while(load, done)
    await accepted_at_least(load, 500)
    await set_read_only(fault_postgres, True)
    read_only_at = time.monotonic()
    try:
        await asyncio.sleep(5)
    finally:
        read_write_at = time.monotonic()
        await set_read_only(fault_postgres, False)
    await asyncio.sleep(1)
    done.set()
    await asyncio.wait_for(running, 60)

    during = [answer for answer in load.answers if read_only_at < answer.sent_at and answer.answered_at < read_write_at]
    assert len(during) > 100
    assert [answer.status for answer in during if answer.status != 202] == [], "ingestion needs only Redis"
    assert load.numbers(None) == set(), "the process stayed up: every request got an answer"
    await service.healthy(timeout_s=5)
    stored = await drained(stack, fault_redis, load.accepted)
    assert stored == load.accepted, f"stored {len(stored)} != accepted {len(load.accepted)}"
    assert await stack.queue_state(fault_redis) == (0, 0, 0), "nothing dead-lettered, nothing left behind"
    log = await outage_logged_once_per_writer(service)
    assert "ReadOnlySQLTransactionError" in log
    assert "stopped unexpectedly" not in log
    assert "needs an operator" not in log, "a read-only server is a passing condition, not an operator's problem"


async def outage_logged_once_per_writer(process: RoleProcess, timeout_s: float = 15) -> str:
    """Each writer that met the outage logged it once and its end once (a writer with nothing to write meets none)."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = process.log()
        down = re.findall(r"writer (\S+): postgresql unavailable", log)
        up = re.findall(r"writer (\S+): postgresql available again", log)
        settled = bool(down) and sorted(down) == sorted(up) and len(set(down)) == len(down)
        if settled or time.monotonic() > deadline:
            assert settled, log
            return log
        await asyncio.sleep(0.2)
