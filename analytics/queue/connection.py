"""The Redis connection policy: one server, or a Redis/Valkey Cluster through redis-py's cluster client, and a plain
client of the server holding a key for what must share one connection."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ClusterError, RedisError

# Shared by the api, the writers (whose blocking BLMOVE must fit in the socket timeout) and the CLI; ingestion does
# not wait for this timeout: the `Pusher` bounds every push by its own deadline.
_CONNECTION: Final[dict[str, Any]] = {
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
    "health_check_interval": 15,
    "max_connections": 64,
}


class ClusterClient(RedisCluster):
    """redis-py's cluster client, plus one plain client per primary for what must share one connection.

    A transaction (MULTI/EXEC) and a durability wait (WAIT and WAITAOF count the writes of their own connection only)
    need one connection to the server holding a shard's slot; redis-py's cluster pipeline (5.2) offers no
    transaction and sends keyless commands to any node. redis-py calls `aclose` whenever it must learn the slots
    again; the per-primary clients are dropped with it, and made again for the new primaries.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct: dict[str, aioredis.Redis] = {}

    def direct(self, host: str, port: int) -> aioredis.Redis:
        """A plain client of one node, made on first use."""
        client = self._direct.get(f"{host}:{port}")
        if client is None:
            client = aioredis.Redis(host=host, port=port, **self._direct_kwargs())
            self._direct[f"{host}:{port}"] = client
        return client

    def direct_to(self, node: ClusterNode) -> aioredis.Redis:
        return self.direct(node.host, int(node.port))

    def _direct_kwargs(self) -> dict[str, Any]:
        """The cluster's credentials and TLS settings, with this module's timeouts."""
        kwargs = self.get_connection_kwargs()
        options = {**_CONNECTION, "username": kwargs.get("username"), "password": kwargs.get("password")}
        if kwargs.get("connection_class") is SSLConnection:
            options.update(ssl=True, **{name: value for name, value in kwargs.items() if name.startswith("ssl_")})
        return options

    async def aclose(self) -> None:
        direct, self._direct = self._direct, {}
        for client in direct.values():
            await client.aclose()
        await super().aclose()


Redis = aioredis.Redis | ClusterClient


def connect_redis(url: str, cluster: bool = False) -> Redis:
    """A client that pings idle connections before use and gives up on a silent server after 5 s; with `cluster`,
    a Redis/Valkey Cluster client that learns every node from the one `url` names."""
    # redis-py types its async commands as `Awaitable[T] | T` (shared with the sync client): hence the casts below.
    if cluster:
        return cast(ClusterClient, ClusterClient.from_url(url, **_CONNECTION))
    return aioredis.Redis.from_url(url, **_CONNECTION)  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def holder_of(client: Redis, key: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the server that holds `key`: everything sent through it in one pipeline goes on one
    connection, so MULTI/EXEC and WAIT/WAITAOF mean what they mean on a single server. On a cluster, any error makes
    the client learn the slots again (a failover moved them, or the node is gone) before it is raised; nothing is
    retried here, so a transaction is never sent twice."""
    if isinstance(client, aioredis.Redis):
        yield client
        return
    await client.initialize()
    try:
        node = client.get_node_from_key(key)
        if node is None:
            raise ClusterError(f"no node of the cluster serves the slot of {key}")
        yield client.direct_to(node)
    except RedisError:
        await client.aclose()
        raise


async def primaries(client: Redis) -> list[aioredis.Redis]:
    """A plain client of each server holding queue keys: the one server, or every primary of a cluster."""
    if isinstance(client, aioredis.Redis):
        return [client]
    await client.initialize()
    return [client.direct_to(node) for node in client.get_primaries()]


async def replicas(client: Redis) -> list[aioredis.Redis]:
    """A plain client of each replica of a cluster, as its primaries list them (the slot map may not name a replica
    yet); none for one server: its replicas are its own business."""
    if not isinstance(client, ClusterClient):
        return []
    found = []
    for primary in await primaries(client):
        replication = await primary.info("replication")
        for index in range(int(replication.get("connected_slaves", 0))):
            replica = replication[f"slave{index}"]
            found.append(client.direct(str(replica["ip"]), int(replica["port"])))
    return found


def script(client: Redis, text: str) -> AsyncScript:
    """A Lua script run by its SHA; on a cluster, on the node owning its keys (each script touches one shard's)."""
    # redis-py types register_script for the single-server client only; the cluster client's is the same method.
    return cast(aioredis.Redis, client).register_script(text)
