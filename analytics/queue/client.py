"""The translation of redis-py's errors into the project's, what scrapes read, and whether the servers can confirm
pushes as durable as asked."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from analytics.config import ConfigError, Durability
from analytics.errors import QueueUnavailable
from analytics.observability.logs import describe_error
from analytics.queue.connection import ClusterClient, Redis, primaries, replicas
from analytics.queue.keys import QueueKeys
from analytics.queue.shards import known_shards

P = ParamSpec("P")
T = TypeVar("T")


class QueueSnapshot(msgspec.Struct, frozen=True):
    """The queue as a scrape sees it: totals over the shards, and each shard's depth."""

    queued: int
    dead: int
    processing: dict[str, int]
    writers_alive: int
    shard_depths: tuple[int, ...] = ()


def translated(operation: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Raise `QueueUnavailable` for any redis-py error: callers above queue/ never see the driver's exceptions."""

    @functools.wraps(operation)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await operation(*args, **kwargs)
        except RedisError as error:
            raise QueueUnavailable(describe_error(error)) from error

    return run


@translated
async def ping(client: Redis) -> None:
    """Every server that takes pushes answers: the one server, or every primary (a replica's absence is the
    durability's concern)."""
    if isinstance(client, ClusterClient):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await cast("Awaitable[bool]", client.ping())


@translated
async def snapshot(client: Redis, keys: QueueKeys, shards: int = 1) -> QueueSnapshot:
    """Queue depth, dead letters and what each registered writer lane holds, summed over every shard that may hold
    records (`shards` is this process's setting), in three round trips."""
    shard_keys = [keys.of_shard(shard) for shard in range(await known_shards(client, keys, shards))]
    async with client.pipeline(transaction=False) as pipe:
        for each in shard_keys:
            pipe.llen(each.queue)
            pipe.llen(each.dead)
            pipe.smembers(each.writers)
        replies = await pipe.execute()
    depths: list[int] = replies[0::3]
    registered = [
        (each, member.decode()) for each, members in zip(shard_keys, replies[2::3], strict=True) for member in members
    ]
    async with client.pipeline(transaction=False) as pipe:
        for each, writer_id in registered:
            pipe.llen(each.processing(writer_id))
            pipe.exists(each.heartbeat(writer_id))
        held_and_alive = await pipe.execute()
    held: dict[str, int] = {}
    alive: set[str] = set()
    for (_, writer_id), count, beating in zip(registered, held_and_alive[0::2], held_and_alive[1::2], strict=True):
        held[writer_id] = held.get(writer_id, 0) + count
        if beating:
            alive.add(writer_id)
    return QueueSnapshot(
        queued=sum(depths),
        dead=sum(replies[1::3]),
        processing=dict(sorted(held.items())),
        writers_alive=len(alive),
        shard_depths=tuple(depths),
    )


@translated
async def check_durability(client: Redis, durability: Durability) -> str | None:
    """Refuse (`ConfigError`) a durability the servers can never confirm, so that it fails at start rather than as a
    503 on every push; the warning (returned) when they cannot confirm it yet, a replica that may still connect.

    On a cluster every primary is checked, and for fsync every replica too: a failover promotes a replica, so there
    a push's fsync is confirmed on its primary and on a replica (`Pusher`)."""
    servers = await primaries(client)
    if durability is Durability.FSYNC:
        for server in servers:
            await _check_fsync(server, primary=True)
        for server in await replicas(client):
            await _check_fsync(server, primary=False)
    if durability is Durability.REPLICA or (durability is Durability.FSYNC and isinstance(client, ClusterClient)):
        for server in servers:
            replication = await server.info("replication")
            if int(replication.get("connected_slaves", 0)) == 0:
                where = "Redis" if server is client else f"the primary at {_address(server)}"
                return f"no replica is connected to {where}: ingestion answers 503 until one is"
    return None


def _address(server: aioredis.Redis) -> str:
    kwargs = server.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


async def _check_fsync(server: aioredis.Redis, primary: bool) -> None:
    """A primary must answer WAITAOF (a replica refuses it, and its fsync is reported by its primary's WAITAOF)."""
    info = await server.info("server")
    valkey = info.get("valkey_version")
    name = f"Valkey {valkey}" if valkey else f"Redis {info.get('redis_version')}"
    if not primary:
        name = f"the replica at {_address(server)} ({name})"
    refusal = f"ANALYTICS_DURABILITY=fsync: {name} cannot confirm the fsync of a push"
    try:
        if primary:
            # Answers at once: nothing was written on this connection yet.
            await cast("Awaitable[list[int]]", server.waitaof(0, 0, 1))
    except ResponseError as error:
        raise ConfigError(f"{refusal}: it refuses WAITAOF ({error}); WAITAOF needs Redis 7.2+ or Valkey") from None
    if not int((await server.info("persistence"))["aof_enabled"]):
        raise ConfigError(f"{refusal}: it runs with appendonly no (set appendonly yes)")
    try:
        policy = (await server.config_get("appendfsync")).get("appendfsync")
    except ResponseError:
        policy = None  # CONFIG renamed or forbidden (managed Redis): WAITAOF's own answers will say
    if policy == "no":
        raise ConfigError(f"{refusal}: with appendfsync no it never fsyncs (set appendfsync everysec or always)")
