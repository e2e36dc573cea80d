"""The Redis connection policy, the translation of redis-py's errors into the project's, what scrapes read, and
whether the server can confirm pushes as durable as asked."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from analytics.config import ConfigError, Durability
from analytics.errors import QueueUnavailable
from analytics.observability.logs import describe_error
from analytics.queue.keys import QueueKeys
from analytics.queue.shards import known_shards

P = ParamSpec("P")
T = TypeVar("T")

Redis = aioredis.Redis


class QueueSnapshot(msgspec.Struct, frozen=True):
    """The queue as a scrape sees it: totals over the shards, and each shard's depth."""

    queued: int
    dead: int
    processing: dict[str, int]
    writers_alive: int
    shard_depths: tuple[int, ...] = ()


def connect_redis(url: str) -> aioredis.Redis:
    """A client that pings idle connections before use and gives up on a silent server after 5 s.

    Shared by the api, the writers (whose blocking BLMOVE must fit in the socket timeout) and the CLI; ingestion
    does not wait for this timeout: the `Pusher` bounds every push by its own deadline.
    """
    # redis-py types its async commands as `Awaitable[T] | T` (shared with the sync client): hence the casts below.
    return aioredis.Redis.from_url(  # type: ignore[no-any-return]
        url,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=15,
        max_connections=64,
    )


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
async def ping(client: aioredis.Redis) -> None:
    await cast("Awaitable[bool]", client.ping())


@translated
async def snapshot(client: aioredis.Redis, keys: QueueKeys, shards: int = 1) -> QueueSnapshot:
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
async def check_durability(client: aioredis.Redis, durability: Durability) -> str | None:
    """Refuse (`ConfigError`) a durability this server can never confirm, so that it fails at start rather than as a
    503 on every push; the warning (returned) when it cannot confirm it yet, a replica that may still connect."""
    if durability is Durability.REPLICA:
        replication = await client.info("replication")
        if int(replication.get("connected_slaves", 0)) == 0:
            return "no replica is connected to Redis: ingestion answers 503 until one is"
    elif durability is Durability.FSYNC:
        server = await client.info("server")
        valkey = server.get("valkey_version")
        name = f"Valkey {valkey}" if valkey else f"Redis {server.get('redis_version')}"
        refusal = f"ANALYTICS_DURABILITY=fsync: {name} cannot confirm the fsync of a push"
        try:
            # Answers at once: nothing was written on this connection yet.
            await cast("Awaitable[list[int]]", client.waitaof(0, 0, 1))
        except ResponseError as error:
            raise ConfigError(f"{refusal}: it refuses WAITAOF ({error}); WAITAOF needs Redis 7.2+ or Valkey") from None
        if not int((await client.info("persistence"))["aof_enabled"]):
            raise ConfigError(f"{refusal}: it runs with appendonly no (set appendonly yes)")
        try:
            policy = (await client.config_get("appendfsync")).get("appendfsync")
        except ResponseError:
            policy = None  # CONFIG renamed or forbidden (managed Redis): WAITAOF's own answers will say
        if policy == "no":
            raise ConfigError(f"{refusal}: with appendfsync no it never fsyncs (set appendfsync everysec or always)")
    return None
