"""The sharded queue with real processes: an api spreading pushes over 8 shards, three writer processes taking turns
on them under leases, one of them killed while it holds a lease and a batch. The exact comparisons of
test_faults.py: every event answered 202 is stored, nothing stored was not sent, nothing is stored twice."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections import defaultdict

import pytest
import redis.asyncio as aioredis

from tests.helpers.load import Load, accepted_at_least, assert_exact, load_while
from tests.helpers.processes import RoleProcess
from tests.helpers.stack import Stack, drained

pytestmark = pytest.mark.faults

SHARDS = 8
TTL_S = 2  # the stack's ANALYTICS_HEARTBEAT_TTL_S


def pid_of(writer_id: str) -> int:
    """Writer lane ids are `<host>-<pid>-<random>`."""
    return int(writer_id.rsplit("-", 2)[1])


async def leases(stack: Stack, redis: aioredis.Redis) -> dict[int, str]:
    """Shard -> the lane holding its lease, now."""
    async with redis.pipeline(transaction=False) as pipe:
        for shard in range(SHARDS):
            pipe.get(stack.keys.of_shard(shard).lease)
        holders = await pipe.execute()
    return {shard: holder.decode() for shard, holder in enumerate(holders) if holder is not None}


def sharded(stack: Stack) -> None:
    stack.environment["ANALYTICS_QUEUE_SHARDS"] = str(SHARDS)


async def test_eight_shards_three_writer_processes_under_load_store_every_event_once(
    stack: Stack, fault_redis: aioredis.Redis
) -> None:
    sharded(stack)
    api = stack.role("api").start()
    writers = [stack.role("writer").start() for _ in range(3)]
    await api.healthy()
    load = Load(api.base_url)
    done = asyncio.Event()
    running = await load_while(load, done, at_least=12_000)
    leased_by: dict[int, set[int]] = defaultdict(set)  # shard -> pids of the processes seen holding its lease
    depths: dict[int, int] = defaultdict(int)  # shard -> most records seen waiting in it
    while len(load.answers) < 12_000:
        for shard, holder in (await leases(stack, fault_redis)).items():
            leased_by[shard].add(pid_of(holder))
        for shard in range(SHARDS):
            depths[shard] = max(depths[shard], await fault_redis.llen(stack.keys.of_shard(shard).queue))
        await asyncio.sleep(0.01)
    done.set()
    await asyncio.wait_for(running, 60)

    stored = await drained(stack, fault_redis, load.accepted)
    assert load.numbers(None) == set()
    assert len(load.accepted) >= 11_000
    assert_exact(load, stored)
    assert await stack.queue_state(fault_redis) == (0, 0, 0)
    assert sorted(shard for shard in range(SHARDS) if depths[shard]) == list(range(SHARDS)), "pushes reach every shard"
    assert sorted(leased_by) == list(range(SHARDS)), "every shard is taken in turn"
    assert set().union(*leased_by.values()) == {writer.pid for writer in writers}, "every writer process takes turns"
    for process in stack.processes:
        assert "stopped unexpectedly" not in process.log()


async def test_a_writer_killed_while_holding_a_lease_and_a_batch_is_taken_over_and_loses_nothing(
    stack: Stack, fault_redis: aioredis.Redis
) -> None:
    sharded(stack)
    api = stack.role("api").start()
    writers = [stack.role("writer").start() for _ in range(3)]
    await api.healthy()
    load = Load(api.base_url)
    done = asyncio.Event()
    running = await load_while(load, done)
    await accepted_at_least(load, 2000)

    # Freeze a writer the moment one of its lanes holds a lease and records in that shard, then kill it: it dies
    # holding both, which only the other writers can give back.
    victim, shard, lane, held = await frozen_holding_a_batch(stack, fault_redis, writers)
    victim.kill()
    killed_at = time.monotonic()
    victim_lanes = {holder for holder in (await leases(stack, fault_redis)).values() if pid_of(holder) == victim.pid}
    victim_shards = {s for s, holder in (await leases(stack, fault_redis)).items() if holder in victim_lanes}
    taken_over: dict[int, float] = {}
    while time.monotonic() - killed_at < 3 * TTL_S + 1:
        for s, holder in (await leases(stack, fault_redis)).items():
            if s in victim_shards and s not in taken_over and pid_of(holder) != victim.pid:
                taken_over[s] = time.monotonic() - killed_at
        await asyncio.sleep(0.005)
    done.set()
    await asyncio.wait_for(running, 60)

    assert shard in victim_shards
    assert sorted(taken_over) == sorted(victim_shards), f"leases never taken over: {victim_shards - set(taken_over)}"
    assert max(taken_over.values()) < TTL_S + 1, f"took over after {taken_over} s (heartbeat TTL {TTL_S} s)"
    stored = await drained(stack, fault_redis, load.accepted)
    assert load.numbers(None) == set()
    assert_exact(load, stored)
    assert await stack.queue_state(fault_redis) == (0, 0, 0)
    logs = "".join(writer.log() for writer in writers if writer is not victim)
    recovered = re.findall(
        rf"writer {re.escape(lane)} stopped beating: re-queued its (\d+) uncommitted events in shard {shard}\b", logs
    )
    # Two writers may both find the dead lane; the second finds its list already moved (0).
    assert sum(int(count) for count in recovered) == held, "its batch went back to its shard's queue, once"
    for s in range(SHARDS):
        members = {member.decode() for member in await fault_redis.smembers(stack.keys.of_shard(s).writers)}
        assert not members & victim_lanes, "a dead lane is forgotten in every shard"


async def frozen_holding_a_batch(
    stack: Stack, redis: aioredis.Redis, writers: list[RoleProcess]
) -> tuple[RoleProcess, int, str, int]:
    """Stop (SIGSTOP) writer processes in turn until one is caught holding a lease on a shard with records in its
    lane's processing list there: (that process, the shard, the lane, the records it holds)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for writer in writers:
            os.kill(writer.pid, signal.SIGSTOP)
            for shard, holder in (await leases(stack, redis)).items():
                if pid_of(holder) == writer.pid:
                    held = await redis.llen(stack.keys.of_shard(shard).processing(holder))
                    if held:
                        return writer, shard, holder, held
            os.kill(writer.pid, signal.SIGCONT)
            await asyncio.sleep(0.01)
    raise AssertionError("no writer was ever caught holding a lease and a batch")
