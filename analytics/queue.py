"""The Redis queue protocol: coalesced pushes, atomic batch claims, acks, recovery of orphans, dead letters."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, cast

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from analytics.logs import StateLog

logger = logging.getLogger(__name__)

PUSH_CHUNK: Final = 1000
LENGTH_RECHECK_S: Final = 0.1
# A request is answered within this of reaching the pusher: 202 if Redis acknowledged by then, else 503.
PUSH_DEADLINE_S: Final = 1.0
# A batch left with less time than this is answered 503 unsent: the push before it was slow or stuck.
MIN_PUSH_BUDGET_S: Final = 0.1

# Move up to ARGV[1] records from the queue head into a processing list, atomically. Lua's unpack() fails past
# ~8,000 values and a script is not rolled back, so push in chunks and trim last: a failure can duplicate
# (harmless: the merge is idempotent) but never lose.
CLAIM_SCRIPT: Final = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local n = #items
for i = 1, n, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 999, n)))
end
if n > 0 then
    redis.call('LTRIM', KEYS[1], n, -1)
end
return items
"""

# Give a dead writer's processing list back to the queue: only when its heartbeat has expired.
# KEYS: queue, processing list, heartbeat, writers set; ARGV: writer id. Returns the records moved, or -1.
RECOVER_SCRIPT: Final = """
if redis.call('EXISTS', KEYS[3]) == 1 then
    return -1
end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local n = #items
for i = 1, n, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(items, i, math.min(i + 999, n)))
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[4], ARGV[1])
return n
"""

# Give this writer's own processing list back to the queue. KEYS: queue, processing list. Returns the records moved.
# The list is deleted only after every chunk was pushed: a failure part-way can duplicate, never lose.
GIVE_BACK_SCRIPT: Final = """
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local n = #items
for i = 1, n, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(items, i, math.min(i + 999, n)))
end
redis.call('DEL', KEYS[2])
return n
"""


class QueueSnapshot(msgspec.Struct, frozen=True):
    """The queue as a scrape sees it."""

    queued: int
    dead: int
    processing: dict[str, int]
    writers_alive: int


class QueueUnavailable(Exception):
    """Redis did not acknowledge: the events are not queued."""


class QueueFull(Exception):
    """The queue holds more than its cap: the writer is behind, refuse rather than grow without bound."""


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Every key shares the hash tag `{prefix}` so the multi-key scripts run on Redis Cluster."""

    prefix: str

    @property
    def queue(self) -> str:
        return f"{{{self.prefix}}}:queue"

    @property
    def dead(self) -> str:
        return f"{{{self.prefix}}}:dead"

    @property
    def writers(self) -> str:
        return f"{{{self.prefix}}}:writers"

    def processing(self, writer_id: str) -> str:
        return f"{{{self.prefix}}}:processing:{writer_id}"

    def heartbeat(self, writer_id: str) -> str:
        return f"{{{self.prefix}}}:heartbeat:{writer_id}"


class DeadLetter(msgspec.Struct, frozen=True):
    reason: str
    failed_at: datetime
    data: bytes


_encode_dead = msgspec.msgpack.Encoder().encode
_decode_dead = msgspec.msgpack.Decoder(DeadLetter).decode


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


class Pusher:
    """Coalesces the records of concurrent requests into one push: an RPUSH, or MULTI/EXEC over chunks of them.

    One push is in flight at a time; requests arriving meanwhile wait for the next one, so under load each
    round trip carries many requests. MULTI/EXEC makes a push all-or-nothing: a request answered 503 queued none
    of its records, unless Redis executed a push whose answer never came ("not confirmed").

    Every batch has a deadline: `deadline_s` after its oldest request arrived. A push still unanswered then is
    abandoned (its connection dropped) and its requests answered 503; a batch that waited behind it until too
    little time is left is answered 503 without being sent. So a Redis that stops answering (frozen, partitioned)
    costs each request at most `deadline_s`, no waiters pile up, and the next push after it answers succeeds.
    """

    def __init__(
        self, client: aioredis.Redis, keys: QueueKeys, max_length: int, deadline_s: float = PUSH_DEADLINE_S
    ) -> None:
        self.client = client
        self.keys = keys
        self._key = keys.queue
        self._max_length = max_length
        self._deadline_s = deadline_s
        self._pending: list[tuple[Sequence[bytes], asyncio.Future[None]]] = []
        self._oldest_at = 0.0  # loop time when the oldest pending request arrived
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._known_length = 0
        self._length_checked_at = 0.0
        self._was_full = False
        self._redis = StateLog(logger, "redis unavailable, ingestion answers 503", "redis available again")

    async def push(self, records: Sequence[bytes]) -> None:
        """Return once Redis holds `records`; raise `QueueFull` or `QueueUnavailable` otherwise."""
        if self._loop is None:
            # Looked up once: on Python 3.11 every get_running_loop() is a getpid() system call.
            self._loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = self._loop.create_future()
        if not self._pending:
            self._oldest_at = self._loop.time()
        self._pending.append((records, future))
        if self._flusher is None:
            self._flusher = self._loop.create_task(self._flush_while_pending())
        await future

    async def drain(self) -> None:
        """Wait for every push already accepted into the buffer (graceful shutdown)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush_while_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                deadline = self._oldest_at + self._deadline_s
                if deadline - loop.time() < MIN_PUSH_BUDGET_S:
                    self._settle(batch, QueueUnavailable("waited behind a push Redis was slow to answer; not sent"))
                else:
                    await self._flush(batch, deadline)
        finally:
            self._flusher = None

    async def _flush(self, batch: list[tuple[Sequence[bytes], asyncio.Future[None]]], deadline: float) -> None:
        error: Exception | None = None
        try:
            async with asyncio.timeout_at(deadline):
                if await self._over_cap():
                    error = QueueFull(f"the queue holds {self._known_length} events, its cap is {self._max_length}")
                else:
                    self._known_length = await self._rpush([record for records, _ in batch for record in records])
        except RedisError as failure:
            error = QueueUnavailable(str(failure))
            self._redis.failed(failure)
        except TimeoutError:
            error = QueueUnavailable(f"no answer from Redis within {self._deadline_s} s")
            self._redis.failed(error)
        else:
            self._redis.recovered()
        self._settle(batch, error)

    @staticmethod
    def _settle(batch: list[tuple[Sequence[bytes], asyncio.Future[None]]], error: Exception | None) -> None:
        for _, future in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def _rpush(self, records: list[bytes]) -> int:
        if len(records) <= PUSH_CHUNK:
            # One RPUSH is atomic by itself; MULTI/EXEC around it cost ~30 us more per push (bench/RESULTS.md).
            return await cast("Awaitable[int]", self.client.rpush(self._key, *records))
        async with self.client.pipeline(transaction=True) as pipe:
            for start in range(0, len(records), PUSH_CHUNK):
                pipe.rpush(self._key, *records[start : start + PUSH_CHUNK])
            lengths: list[int] = await pipe.execute()
        return lengths[-1]

    async def _over_cap(self) -> bool:
        """Each push returns the queue length; only while over the cap is it re-read, at most every 100 ms."""
        if self._known_length < self._max_length:
            return False
        now = time.monotonic()
        if now - self._length_checked_at >= LENGTH_RECHECK_S:
            self._length_checked_at = now
            self._known_length = await cast("Awaitable[int]", self.client.llen(self._key))
        full = self._known_length >= self._max_length
        if full != self._was_full:
            self._was_full = full
            if full:
                logger.warning("queue over its cap of %s events: ingestion answers 503", self._max_length)
            else:
                logger.info("queue back under its cap: ingestion resumes")
        return full


class WriterQueue:
    """The writer's side: claim into its own processing list, ack, heartbeat, recover orphans, dead-letter."""

    def __init__(self, client: aioredis.Redis, keys: QueueKeys, writer_id: str, heartbeat_ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self.writer_id = writer_id
        self._heartbeat_ttl_ms = heartbeat_ttl_s * 1000
        self._processing = keys.processing(writer_id)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._recover = client.register_script(RECOVER_SCRIPT)
        self._give_back = client.register_script(GIVE_BACK_SCRIPT)

    async def heartbeat(self) -> None:
        """Prove this writer alive; (re-)register it so recovery knows its processing list."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.heartbeat(self.writer_id), b"1", px=self._heartbeat_ttl_ms)
            pipe.sadd(self._keys.writers, self.writer_id)
            await pipe.execute()

    async def retire(self) -> None:
        """On a clean exit: nothing left in processing, so drop the heartbeat and the registration."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.heartbeat(self.writer_id))
            pipe.srem(self._keys.writers, self.writer_id)
            await pipe.execute()

    async def claim(self, count: int) -> list[bytes]:
        records: list[bytes] = await self._claim(keys=[self._keys.queue, self._processing], args=[count])
        return records

    async def take_first(self, timeout_s: float) -> bytes | None:
        """Block until a record arrives and move it into the processing list, so a crash cannot lose it."""
        # blmove is typed for whole seconds, but Redis >= 6 takes a decimal timeout.
        pending = self._client.blmove(self._keys.queue, self._processing, timeout_s, src="LEFT", dest="RIGHT")  # type: ignore[arg-type]
        return await cast("Awaitable[bytes | None]", pending)

    async def held(self) -> list[bytes]:
        """What this writer's processing list holds: records claimed but not yet acked."""
        return await cast("Awaitable[list[bytes]]", self._client.lrange(self._processing, 0, -1))

    async def ack(self) -> None:
        """The batch is committed in PostgreSQL: forget it."""
        await self._client.delete(self._processing)

    async def give_back(self) -> int:
        """Return this writer's uncommitted batch to the queue (shutdown without a database), in one script.

        Read, re-push and delete in separate commands would lose the batch to an error or a kill between them.
        """
        moved: int = await self._give_back(keys=[self._keys.queue, self._processing])
        return moved

    async def recover_orphans(self) -> int:
        """Re-queue the processing lists of writers whose heartbeat expired. Returns the records moved."""
        moved = 0
        writer_ids = await cast("Awaitable[set[bytes]]", self._client.smembers(self._keys.writers))
        for raw_id in writer_ids:
            writer_id = raw_id.decode()
            if writer_id == self.writer_id:
                continue
            keys = [
                self._keys.queue,
                self._keys.processing(writer_id),
                self._keys.heartbeat(writer_id),
                self._keys.writers,
            ]
            count: int = await self._recover(keys=keys, args=[writer_id])
            if count >= 0:
                logger.warning("writer %s stopped beating: re-queued its %s uncommitted events", writer_id, count)
                moved += count
        return moved

    async def dead_letter(self, failures: Sequence[tuple[bytes, str]]) -> None:
        now = datetime.now(UTC)
        entries = [_encode_dead(DeadLetter(reason=reason, failed_at=now, data=data)) for data, reason in failures]
        await cast("Awaitable[int]", self._client.rpush(self._keys.dead, *entries))


def decode_dead_letter(entry: bytes) -> DeadLetter:
    return _decode_dead(entry)


class DeadLetters:
    """Operator's view of `{prefix}:dead`: read it, send it back to the queue, or empty it."""

    def __init__(self, client: aioredis.Redis, keys: QueueKeys) -> None:
        self._client = client
        self._keys = keys

    async def read(self, limit: int) -> list[DeadLetter]:
        entries = await cast("Awaitable[list[bytes]]", self._client.lrange(self._keys.dead, 0, limit - 1))
        return [decode_dead_letter(entry) for entry in entries]

    async def requeue(self) -> int:
        """Chunk by chunk, each in one transaction; writers only append, so trimming the head is safe."""
        moved = 0
        while True:
            entries = await cast("Awaitable[list[bytes]]", self._client.lrange(self._keys.dead, 0, PUSH_CHUNK - 1))
            if not entries:
                return moved
            records = [decode_dead_letter(entry).data for entry in entries]
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.rpush(self._keys.queue, *records)
                pipe.ltrim(self._keys.dead, len(entries), -1)
                await pipe.execute()
            moved += len(entries)

    async def purge(self) -> int:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.llen(self._keys.dead)
            pipe.delete(self._keys.dead)
            length, _ = await pipe.execute()
        return int(length)


async def ping(client: aioredis.Redis) -> None:
    await cast("Awaitable[bool]", client.ping())


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
