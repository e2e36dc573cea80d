"""The Valkey Cluster the scale-out tests run on (tests/helpers/cluster.py), checked on its own: three masters with a
replica each, keys of different hash tags spread over the masters, and a failover that keeps what a replica
acknowledged (WAIT) while the client follows the new master."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from tests.helpers.cluster import ValkeyCluster

TAGS = [f"{{analytics:{shard}}}" for shard in range(16)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    started = ValkeyCluster(tmp_path_factory.mktemp("cluster"))
    started.start()
    yield started
    started.stop()


@pytest.fixture
async def client(cluster: ValkeyCluster) -> AsyncIterator[RedisCluster]:
    connected = RedisCluster.from_url(cluster.url)
    yield connected
    await connected.aclose()


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


async def test_a_push_a_replica_confirmed_survives_its_master_killed(cluster: ValkeyCluster) -> None:
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
