"""The queue on a real Valkey Cluster (tests/helpers/cluster.py: three masters with a replica each), through the
client `ANALYTICS_REDIS_CLUSTER=true` selects: the cluster itself (hash tags spread over the masters, a failover keeps
what a replica acknowledged), then the queue's operations on it: sharded pushes with each durability, writer lanes,
dead letters, the scrape, the start-up checks. The service's processes under load and a master killed mid-load are
in tests/faults/test_cluster.py."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from analytics.config import ConfigError, Durability, Settings
from analytics.errors import NotConfirmed
from analytics.events.record import Event, encode_event
from analytics.observability.metrics import Metrics
from analytics.queue.client import check_durability, ping, snapshot
from analytics.queue.connection import ClusterClient, connect_redis
from analytics.queue.consumer import WriterQueue
from analytics.queue.dead_letters import DeadLetter, DeadLetters, encode_dead_letter
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import PUSH_CHUNK, SHARD_REST_S, Pusher
from analytics.store.events import EventStore
from analytics.writer.loop import Writer, new_writer_id
from analytics.writer.slices import Slices
from tests.helpers.cluster import ValkeyCluster
from tests.helpers.waiting import eventually

TAGS = [f"{{analytics:{shard}}}" for shard in range(16)]
SHARDS = 16
T0 = 1_762_975_801_000_000  # 2025-11-12T19:30:01Z in microseconds


def record(n: int) -> bytes:
    return encode_event(Event("s", "page_view", "/p", f"u{n}", T0 + n))


def masters_holding(cluster: ValkeyCluster, keys: QueueKeys, key_of: str) -> set[int]:
    """The ports of the masters that own the slots of `key_of` (a QueueKeys property) over every shard."""
    return {cluster.node_of_slot(key_slot(getattr(keys.of_shard(s), key_of).encode())).port for s in range(SHARDS)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    started = ValkeyCluster(tmp_path_factory.mktemp("cluster"))
    started.start()
    yield started
    started.stop()


@pytest.fixture
async def client(cluster: ValkeyCluster) -> AsyncIterator[ClusterClient]:
    connected = connect_redis(cluster.url, cluster=True)
    assert isinstance(connected, ClusterClient)
    yield connected
    await connected.aclose()


@pytest.fixture
def cluster_keys() -> QueueKeys:
    return QueueKeys(f"cluster-{secrets.token_hex(4)}")


async def test_three_masters_each_with_a_replica_hold_every_slot(cluster: ValkeyCluster) -> None:
    info = cluster.cli(cluster.nodes[0], "cluster", "info")
    assert "cluster_state:ok" in info
    assert "cluster_slots_assigned:16384" in info
    assert len(cluster.master_ports()) == 3
    roles = [cluster.cli(node, "role").split()[0] for node in cluster.nodes]
    assert sorted(roles) == ["master"] * 3 + ["slave"] * 3


async def test_hash_tags_spread_keys_over_the_masters(cluster: ValkeyCluster, client: RedisCluster) -> None:
    owners = {tag: cluster.node_of_slot(key_slot(f"{tag}:queue".encode())).port for tag in TAGS}
    for tag in TAGS:
        await client.rpush(f"{tag}:queue", b"record")
    assert set(owners.values()) == set(cluster.master_ports())
    for tag, port in owners.items():
        direct = aioredis.Redis(port=port)
        try:
            assert await direct.llen(f"{tag}:queue") == 1  # the key lives on the master that owns its slot
        finally:
            await direct.aclose()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[ValkeyCluster]:
    """A cluster for a test that kills a master: the module's keeps a replica per master for the others."""
    started = ValkeyCluster(tmp_path / "cluster")
    started.start()
    yield started
    started.stop()


async def test_a_push_a_replica_confirmed_survives_its_master_killed(own_cluster: ValkeyCluster) -> None:
    cluster = own_cluster
    key = f"{TAGS[3]}:failover"
    master = cluster.node_of_slot(key_slot(key.encode()))
    direct = aioredis.Redis(port=master.port)
    try:
        assert await direct.rpush(key, *[f"r{n}".encode() for n in range(1000)]) == 1000
        assert await direct.wait(1, 5000) == 1  # WAIT: the replica has the push (ANALYTICS_DURABILITY=replica)
    finally:
        await direct.aclose()
    cluster.kill_and_fail_over(master)
    assert cluster.node_of_slot(key_slot(key.encode())) is not master
    survivor = RedisCluster.from_url(cluster.running()[0].url)
    try:
        assert await survivor.llen(key) == 1000
    finally:
        await survivor.aclose()


async def test_the_cluster_client_pings_the_primaries_and_accepts_each_durability(client: ClusterClient) -> None:
    await ping(client)
    for durability in Durability:
        assert await check_durability(client, durability) is None


async def test_fsync_is_refused_where_a_node_of_the_cluster_runs_without_appendonly(
    cluster: ValkeyCluster, client: ClusterClient
) -> None:
    replica = next(node for node in cluster.running() if node.port not in cluster.master_ports())
    cluster.cli(replica, "config", "set", "appendonly", "no")
    try:
        with pytest.raises(ConfigError, match="appendonly no"):
            await check_durability(client, Durability.FSYNC)
    finally:
        cluster.cli(replica, "config", "set", "appendonly", "yes")


@pytest.mark.parametrize("durability", list(Durability))
async def test_pushes_spread_over_sixteen_shards_on_every_master_and_writer_lanes_store_each_once(
    cluster: ValkeyCluster, client: ClusterClient, cluster_keys: QueueKeys, database_url: str, durability: Durability
) -> None:
    pusher = Pusher(client, cluster_keys, 10**9, durability, shards=SHARDS)
    # One flush per shard, one of them past PUSH_CHUNK (MULTI/EXEC on one connection), and then concurrent requests.
    await pusher.push([record(n) for n in range(PUSH_CHUNK + 500)])
    for shard in range(1, SHARDS):
        await pusher.push([record(10_000 + shard)])
    await asyncio.gather(*[pusher.push([record(20_000 + n)]) for n in range(400)])
    sent = PUSH_CHUNK + 500 + SHARDS - 1 + 400
    depths = [await client.llen(cluster_keys.of_shard(shard).queue) for shard in range(SHARDS)]
    assert sum(depths) == sent
    assert all(depths), f"every shard has records: {depths}"
    assert masters_holding(cluster, cluster_keys, "queue") == set(cluster.master_ports()), "every master takes pushes"
    assert (await snapshot(client, cluster_keys, SHARDS)).shard_depths == tuple(depths)

    settings = Settings(batch_size=500, flush_interval_ms=10, heartbeat_ttl_s=2, queue_shards=SHARDS)
    queues = [WriterQueue(client, cluster_keys, new_writer_id(), 2, SHARDS) for _ in range(3)]
    lanes = [Writer(settings, Slices([EventStore(database_url)]), queue, Metrics()) for queue in queues]
    tasks = [asyncio.create_task(lane.run()) for lane in lanes]
    try:
        db = await asyncpg.connect(database_url)
        try:

            async def all_stored() -> None:
                assert await db.fetchval("SELECT count(*) FROM events") == sent

            await eventually(all_stored, 30)
            assert await db.fetchval("SELECT count(DISTINCT user_id) FROM events") == sent
        finally:
            await db.close()
    finally:
        for lane in lanes:
            lane.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    after = await snapshot(client, cluster_keys, SHARDS)
    assert (after.queued, after.dead, sum(after.processing.values())) == (0, 0, 0)


async def test_fsync_on_a_cluster_waits_for_a_replica_too(cluster: ValkeyCluster, client: ClusterClient) -> None:
    """A failover promotes a replica and never reads the dead primary's disk again: the push waits for the primary's
    fsync and a replica's acknowledgement. With the fsync alone this push would be confirmed while its replica is
    stopped."""
    keys = QueueKeys(f"cluster-{secrets.token_hex(4)}")
    master = cluster.node_of_slot(key_slot(keys.queue.encode()))
    replica = cluster.replica_of(master)
    pusher = Pusher(client, keys, 10**9, Durability.FSYNC, deadline_s=5)  # room for a busy machine's fsync
    await pusher.push([record(1)])
    replica.freeze()
    try:
        with pytest.raises(NotConfirmed, match="no replica acknowledged"):
            await Pusher(client, keys, 10**9, Durability.FSYNC, deadline_s=0.5).push([record(2)])
    finally:
        replica.thaw()
    await pusher.push([record(3)])
    assert await client.lrange(keys.queue, 0, -1) == [record(1), record(2), record(3)]


async def test_dead_letters_of_every_shard_go_back_to_their_shards_on_a_cluster(
    cluster: ValkeyCluster, client: ClusterClient, cluster_keys: QueueKeys
) -> None:
    await Pusher(client, cluster_keys, 10**9, shards=SHARDS).push([record(0)])  # records the shard count
    now = datetime.now(UTC)
    for shard in range(SHARDS):
        letters = [encode_dead_letter(DeadLetter("bad", now, record(1000 + shard * 10 + n))) for n in range(3)]
        await client.rpush(cluster_keys.of_shard(shard).dead, *letters)
    assert masters_holding(cluster, cluster_keys, "dead") == set(cluster.master_ports())
    dead = DeadLetters(client, cluster_keys, 1)
    listed = await dead.read(1000)
    assert sorted(shard for shard, _ in listed) == sorted(list(range(SHARDS)) * 3)
    assert await dead.requeue() == 3 * SHARDS
    for shard in range(SHARDS):
        queued = await client.lrange(cluster_keys.of_shard(shard).queue, 0, -1)
        assert [record(1000 + shard * 10 + n) for n in range(3)] == [item for item in queued if item != record(0)]
    for shard in range(SHARDS):
        await client.rpush(cluster_keys.of_shard(shard).dead, encode_dead_letter(DeadLetter("bad", now, b"x")))
    assert await dead.purge() == SHARDS
    assert (await snapshot(client, cluster_keys, 1)).dead == 0


async def test_shards_of_a_master_without_its_replica_rest_while_the_others_take_the_pushes(
    cluster: ValkeyCluster, client: ClusterClient, cluster_keys: QueueKeys
) -> None:
    """Replica durability, one master's replica stopped: that master's shards answer 503 (not confirmed) and rest, so
    most pushes go to the other masters' shards. Taking turns blindly, k of every 16 pushes would fail (k shards on
    that master). Only a shard's first failure waits out the push deadline; its retries, while other shards take the
    pushes, are probes that give up after `SHARD_PROBE_S` (the process's other requests wait behind them)."""
    master = cluster.node_of_slot(key_slot(cluster_keys.queue.encode()))
    on_master = [
        s for s in range(SHARDS) if cluster.node_of_slot(key_slot(cluster_keys.of_shard(s).queue.encode())) is master
    ]
    replica = cluster.replica_of(master)
    pusher = Pusher(client, cluster_keys, 10**9, Durability.REPLICA, deadline_s=1.5, shards=SHARDS)
    pushes, failures = 250, []  # how long each failed push took

    async def push(n: int) -> None:
        started = time.monotonic()
        try:
            await pusher.push([record(n)])
        except NotConfirmed:
            failures.append(time.monotonic() - started)

    replica.freeze()
    try:
        for n in range(200):
            await push(n)
        await asyncio.sleep(SHARD_REST_S + 0.1)  # shards that failed once are due for a retry
        for n in range(200, pushes):
            await push(n)
    finally:
        replica.thaw()
    failed = len(failures)
    blind = pushes * len(on_master) / SHARDS
    assert 0 < failed <= blind / 2, f"{failed} of {pushes} pushes failed; taking turns blindly: {blind:.0f}"
    deadline_long = [round(seconds, 2) for seconds in failures if seconds > 0.8]
    assert len(deadline_long) <= len(on_master), f"retries waited out the deadline: {deadline_long}"
    assert failed > len(deadline_long), "some shard was retried while the replica was stopped"
    others = [s for s in range(SHARDS) if s not in on_master]
    assert sum([await client.llen(cluster_keys.of_shard(s).queue) for s in others]) == pushes - failed
