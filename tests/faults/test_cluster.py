"""The service on a real Valkey Cluster (`ANALYTICS_REDIS_CLUSTER=true`, three masters with a replica each, started
by tests/helpers/cluster.py): an api process spreading pushes over 16 shards and three writer processes under load,
then a master killed mid-load with each durability, its replica lagging half a second behind when it dies (stopped,
as a busy replica would be). With `replica` or `fsync` every event answered 202 is stored exactly once; with
`async` the failover may lose the pushes the replica had not received, and the test measures and reports how many."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot
from redis.exceptions import TimeoutError as RedisTimeoutError

from analytics.queue.connection import ClusterClient, connect_redis
from analytics.queue.keys import QueueKeys
from tests.faults.conftest import new_stack
from tests.helpers.backends import PostgresServer
from tests.helpers.cluster import ValkeyCluster
from tests.helpers.load import Load, accepted_at_least, assert_exact, load_while
from tests.helpers.stack import Stack, drained

pytestmark = pytest.mark.faults

SHARDS = 16


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ValkeyCluster]:
    """A cluster per test: a killed master leaves the next test one fewer replica."""
    started = ValkeyCluster(tmp_path / "cluster")
    started.start()
    yield started
    started.stop()


@pytest.fixture
async def cluster_stack(fault_postgres: PostgresServer, cluster: ValkeyCluster, tmp_path: Path) -> AsyncIterator[Stack]:
    created = await new_stack(fault_postgres, cluster.url, QueueKeys("analytics"), tmp_path)
    created.environment.update({"ANALYTICS_REDIS_CLUSTER": "true", "ANALYTICS_QUEUE_SHARDS": str(SHARDS)})
    yield created
    for process in created.processes:
        process.kill()


@pytest.fixture
async def cluster_redis(cluster: ValkeyCluster) -> AsyncIterator[ClusterClient]:
    client = connect_redis(cluster.url, cluster=True)
    assert isinstance(client, ClusterClient)
    yield client
    await client.aclose()


def shards_by_master(cluster: ValkeyCluster, keys: QueueKeys) -> Counter[int]:
    """How many of the queue shards each master's port serves."""
    return Counter(cluster.node_of_slot(key_slot(keys.of_shard(s).queue.encode())).port for s in range(SHARDS))


async def test_sixteen_shards_three_writers_on_a_cluster_store_every_event_once(
    cluster: ValkeyCluster, cluster_stack: Stack, cluster_redis: ClusterClient
) -> None:
    api = cluster_stack.role("api").start()
    writers = [cluster_stack.role("writer").start() for _ in range(3)]
    await api.healthy()
    load = Load(api.base_url)
    done = asyncio.Event()
    running = await load_while(load, done, at_least=10_000)
    depths = Counter[int]()  # shard -> most records seen waiting in it
    while len(load.answers) < 10_000:
        async with cluster_redis.pipeline() as pipe:
            for shard in range(SHARDS):
                pipe.llen(cluster_stack.keys.of_shard(shard).queue)
            try:
                lengths = await pipe.execute()
            except RedisTimeoutError:  # a busy machine's slow answer to the observer: look again
                continue
        for shard, length in enumerate(lengths):
            depths[shard] = max(depths[shard], length)
        await asyncio.sleep(0.05)
    done.set()
    await asyncio.wait_for(running, 60)

    stored = await drained(cluster_stack, cluster_redis, load.accepted)
    assert load.numbers(None) == set()
    assert len(load.accepted) >= 9_500
    assert_exact(load, stored)
    assert await cluster_stack.queue_state(cluster_redis) == (0, 0, 0)
    assert sorted(shard for shard in range(SHARDS) if depths[shard]) == list(range(SHARDS)), "pushes reach every shard"
    assert set(shards_by_master(cluster, cluster_stack.keys)) == set(cluster.master_ports()), "on every master"
    for process in [api, *writers]:
        assert "stopped unexpectedly" not in process.log()


REPLICA_LAG_S = 0.5


async def kill_a_master_mid_load(cluster: ValkeyCluster, stack: Stack, durability: str) -> tuple[Load, set[int], float]:
    """Run the api and three writers under load; once events flow, stop the replica of the master serving the most
    shards for `REPLICA_LAG_S`, kill -9 that master, let the replica run again and take over; keep the load on until
    pushes succeed again. (the load, what is stored, seconds from the kill to the failover)"""
    stack.environment["ANALYTICS_DURABILITY"] = durability
    api = stack.role("api").start()
    for _ in range(3):
        stack.role("writer").start()
    await api.healthy()
    load = Load(api.base_url)
    done = asyncio.Event()
    running = await load_while(load, done)
    await accepted_at_least(load, 3000, timeout_s=60)
    port, _ = shards_by_master(cluster, stack.keys).most_common(1)[0]
    victim = next(node for node in cluster.nodes if node.port == port)
    replica = cluster.replica_of(victim)
    replica.freeze()
    await asyncio.sleep(REPLICA_LAG_S)
    victim.kill()
    killed_at = time.monotonic()
    replica.thaw()
    await asyncio.to_thread(cluster.wait_failed_over, victim)
    failover_s = time.monotonic() - killed_at
    # The load ends on a recovered service: 1,000 more accepted after the failover. Not at full speed: with replica or
    # fsync durability the promoted master has no replica, and each retry of one of its resting shards holds the
    # api's one push in flight for a probe's 0.3 s (docs/operations.md, "Redis or Valkey Cluster").
    await accepted_at_least(load, len(load.accepted) + 1000, timeout_s=90)
    done.set()
    await asyncio.wait_for(running, 60)
    client = connect_redis(stack.redis_url, cluster=True)
    try:
        stored = await drained(stack, client, load.accepted)
        assert await stack.queue_state(client) == (0, 0, 0)
    finally:
        await client.aclose()
    return load, stored, failover_s


@pytest.mark.parametrize("durability", ["replica", "fsync"])
async def test_a_master_killed_mid_load_loses_no_acknowledged_event(
    cluster: ValkeyCluster, cluster_stack: Stack, durability: str
) -> None:
    load, stored, failover_s = await kill_a_master_mid_load(cluster, cluster_stack, durability)
    assert_exact(load, stored)  # every 202 stored; stored_numbers refuses duplicates
    assert failover_s < 30
    assert load.numbers(503), "the dead master's shards answered 503 until the failover, not 202"


async def test_with_async_durability_the_loss_to_a_failover_is_measured(
    cluster: ValkeyCluster, cluster_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    load, stored, failover_s = await kill_a_master_mid_load(cluster, cluster_stack, "async")
    lost = load.accepted - stored
    assert not stored - load.sent, "nothing stored that was never sent"
    with capsys.disabled():
        print(
            f"\nasync durability, a master killed mid-load: {len(lost)} of {len(load.accepted)} events answered 202 "
            f"were lost ({len(load.numbers(503))} answered 503, failover in {failover_s:.1f} s)"
        )
    # What async means: a push the replica never received is gone with its master. How many that is depends on how
    # far the replica was behind: none in most runs on an idle machine (stopped, it still receives: its kernel buffers
    # what the master sent), 7,463 of the events in one run on a busy one, queued ones included. So the count is
    # reported, not asserted, beyond less than half (the killed master serves fewer than half of the shards).
    assert len(lost) < len(load.accepted) / 2
