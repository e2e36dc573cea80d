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

P = ParamSpec("P")
T = TypeVar("T")

Redis = aioredis.Redis


class QueueSnapshot(msgspec.Struct, frozen=True):
    """The queue as a scrape sees it."""

    queued: int
    dead: int
    processing: dict[str, int]
    writers_alive: int


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
async def snapshot(client: aioredis.Redis, keys: QueueKeys) -> QueueSnapshot:
    """Queue depth, dead letters, and what each registered writer holds, in two round trips."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.llen(keys.queue)
        pipe.llen(keys.dead)
        pipe.smembers(keys.writers)
        queued, dead, members = await pipe.execute()
    writer_ids = sorted(member.decode() for member in members)
    async with client.pipeline(transaction=False) as pipe:
        for writer_id in writer_ids:
            pipe.llen(keys.processing(writer_id))
            pipe.exists(keys.heartbeat(writer_id))
        replies = await pipe.execute()
    held = dict(zip(writer_ids, replies[0::2], strict=True))
    return QueueSnapshot(queued=queued, dead=dead, processing=held, writers_alive=sum(replies[1::2]))


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
