"""The api's side of the queue: the records of concurrent requests coalesced into one push, each with a deadline."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Sequence
from typing import Final, cast

from redis.exceptions import RedisError

from analytics.config import Durability
from analytics.errors import NotConfirmed, QueueFull, QueueUnavailable
from analytics.observability.logs import StateLog, describe_error
from analytics.queue.connection import ClusterClient, Redis, holder_of
from analytics.queue.keys import QueueKeys
from analytics.queue.shards import record_shards

logger = logging.getLogger(__name__)

# Records per RPUSH: Lua's unpack() and Redis's argument handling stay fast well below ~8,000 values.
PUSH_CHUNK: Final = 1000
LENGTH_RECHECK_S: Final = 0.1
# A request is answered within this of reaching the pusher: 202 if Redis acknowledged by then, else 503.
PUSH_DEADLINE_S: Final = 1.0
# A batch left with less time than this is answered 503 unsent: the push before it was slow or stuck.
MIN_PUSH_BUDGET_S: Final = 0.1
# A durability wait (WAIT, WAITAOF) gives up this long before its batch's deadline, so that Redis's own "not confirmed"
# answer arrives before the deadline abandons the push and drops its connection. Redis ends a blocked command in its
# cron, 10 times a second by default (`hz 10`): a WAIT answered 40-100 ms after its timeout here.
CONFIRM_MARGIN_S: Final = 0.15
# A shard whose push failed (its server down, or the push not confirmed) is passed over while other shards are not:
# for 1 s after its first failure, doubling with each failure in a row up to 16 s, until a push to it succeeds. On a
# Redis Cluster a dead master, or one a failover left without a replica, then costs a few 503 flushes per shard, not
# one in every few flushes for as long as it lasts.
SHARD_REST_S: Final = 1.0
SHARD_REST_MAX_S: Final = 16.0
# A failed shard's next push, while some shard has not failed, gets this long instead of the batch's deadline: the
# process keeps one push in flight, so a retry that runs out the deadline (a WAIT no replica answers, a master that
# does not answer) holds every waiting request as long. Its confirmation wait is this less CONFIRM_MARGIN_S, which
# Redis answers within ~0.1 s of its timeout. When every shard has failed it gets the whole deadline: a slow replica
# then still gets its pushes confirmed.
SHARD_PROBE_S: Final = 0.3
# How often the shard count is recorded again (`queue.shards`), in case Redis lost it: writers and operators' commands
# cover every shard a recorded count names.
RECORD_SHARDS_EVERY_S: Final = 30.0


def rest_after(failures_in_a_row: int) -> float:
    """How long a shard rests after its latest failure: doubling from `SHARD_REST_S` up to `SHARD_REST_MAX_S`. The
    exponent is capped, not only the result: an outage fails a shard ~300 times a second, and 2.0 ** 1024 overflows,
    which killed the flusher and left every later request unanswered (found by the Redis-outage fault test)."""
    doublings = min(failures_in_a_row - 1, math.ceil(math.log2(SHARD_REST_MAX_S / SHARD_REST_S)))
    return min(SHARD_REST_MAX_S, SHARD_REST_S * 2.0**doublings)


class Pusher:
    """Coalesces the records of concurrent requests into one push: an RPUSH, or MULTI/EXEC over chunks of them.

    Each push goes to one queue shard, the next in turn (each process starts at a random one), so pushes spread
    evenly over the shards and a push stays one command on one key: atomic, and on one Redis Cluster node. A shard
    whose push failed rests (`SHARD_REST_S`, doubling while it keeps failing) while other shards take the pushes.

    One push is in flight at a time; requests arriving meanwhile wait for the next one, so under load each
    round trip carries many requests. MULTI/EXEC makes a push all-or-nothing: a request answered 503 queued none
    of its records, unless Redis executed a push whose answer never came ("not confirmed").

    Every batch has a deadline: `deadline_s` after its oldest request arrived. A push still unanswered then is
    abandoned (its connection dropped) and its requests answered 503; a batch that waited behind it until too
    little time is left is answered 503 without being sent. So a Redis that stops answering (frozen, partitioned)
    costs each request at most `deadline_s`, no waiters pile up, and the next push after it answers succeeds.

    With a `durability` other than async, the push is followed by one wait for a replica (WAIT) or for the fsync
    (WAITAOF), within the same deadline: one wait per flush, however many requests it carries. A push Redis holds
    but does not confirm in time is answered 503 (`NotConfirmed`).

    The cap, `max_length`, is on the events queued in all shards together: each push returns its shard's length,
    and their sum is checked before every push.
    """

    def __init__(
        self,
        client: Redis,
        keys: QueueKeys,
        max_length: int,
        durability: Durability = Durability.ASYNC,
        deadline_s: float = PUSH_DEADLINE_S,
        shards: int = 1,
    ) -> None:
        self.client = client
        self.keys = keys
        self._queues = [keys.of_shard(shard).queue for shard in range(shards)]
        self._next_shard = random.randrange(shards)
        self._resting_until = [0.0] * shards  # loop time
        self._failures_in_a_row = [0] * shards
        self._max_length = max_length
        self._durability = durability
        self._fsync_on_cluster = durability is Durability.FSYNC and isinstance(client, ClusterClient)
        self._deadline_s = deadline_s
        self._pending: list[tuple[Sequence[bytes], asyncio.Future[None]]] = []
        self._oldest_at = 0.0  # loop time when the oldest pending request arrived
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shards_recorded_at: float | None = None
        self._known_lengths = [0] * shards
        self._known_length = 0  # their sum
        self._length_checked_at = 0.0
        self._was_full = False
        self._redis = StateLog(logger, "redis unavailable, ingestion answers 503", "redis available again")
        self._confirmations = StateLog(
            logger,
            f"pushes not confirmed ({durability} durability), ingestion answers 503",
            "pushes confirmed again",
        )

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
        shard: int | None = None
        push_by = deadline
        try:
            async with asyncio.timeout_at(deadline):
                await self._record_shards()
                if await self._over_cap():
                    error = QueueFull(f"the queue holds {self._known_length} events, its cap is {self._max_length}")
                else:
                    records = [record for records, _ in batch for record in records]
                    shard = self._pick_shard()
                    push_by = self._push_deadline(shard, deadline)
                    async with asyncio.timeout_at(push_by):
                        if self._durability is Durability.ASYNC:
                            length = await self._rpush(self._queues[shard], records)
                        else:
                            length = await self._rpush_confirmed(self._queues[shard], records, push_by)
                    self._known_length += length - self._known_lengths[shard]
                    self._known_lengths[shard] = length
        except RedisError as failure:
            error = QueueUnavailable(describe_error(failure))
            self._redis.failed(failure)
        except TimeoutError:
            waited = self._deadline_s if push_by == deadline else SHARD_PROBE_S
            error = QueueUnavailable(f"no answer from Redis within {waited} s")
            self._redis.failed(error)
        except NotConfirmed as unconfirmed:
            error = unconfirmed
            self._redis.recovered()
            self._confirmations.failed(unconfirmed)
        else:
            self._redis.recovered()
            self._confirmations.recovered()
        if shard is not None:
            self._rest_if_failed(shard, error)
        self._settle(batch, error)

    def _rest_if_failed(self, shard: int, error: Exception | None) -> None:
        if error is None:
            self._failures_in_a_row[shard] = 0
            return
        self._failures_in_a_row[shard] += 1
        self._resting_until[shard] = asyncio.get_running_loop().time() + rest_after(self._failures_in_a_row[shard])

    def _push_deadline(self, shard: int, deadline: float) -> float:
        """The batch's deadline, or a probe's shorter one for a failed shard while another has not failed."""
        if self._failures_in_a_row[shard] == 0 or all(self._failures_in_a_row):
            return deadline
        return min(deadline, asyncio.get_running_loop().time() + SHARD_PROBE_S)

    def _pick_shard(self) -> int:
        """The next shard in turn that is not resting; the next in turn if all are."""
        now = asyncio.get_running_loop().time()
        count = len(self._queues)
        shard = next(
            (
                candidate % count
                for candidate in range(self._next_shard, self._next_shard + count)
                if self._resting_until[candidate % count] <= now
            ),
            self._next_shard,
        )
        self._next_shard = (shard + 1) % count
        return shard

    @staticmethod
    def _settle(batch: list[tuple[Sequence[bytes], asyncio.Future[None]]], error: Exception | None) -> None:
        for _, future in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def _rpush(self, key: str, records: list[bytes]) -> int:
        if len(records) <= PUSH_CHUNK:
            # One RPUSH is atomic by itself; MULTI/EXEC around it cost ~30 us more per push (bench/RESULTS.md).
            return await cast("Awaitable[int]", self.client.rpush(key, *records))
        async with holder_of(self.client, key) as server, server.pipeline(transaction=True) as pipe:
            for start in range(0, len(records), PUSH_CHUNK):
                pipe.rpush(key, *records[start : start + PUSH_CHUNK])
            lengths: list[int] = await pipe.execute()
        return lengths[-1]

    async def _rpush_confirmed(self, key: str, records: list[bytes], deadline: float) -> int:
        """The push and its waits in one round trip on one connection: WAIT and WAITAOF count the writes sent before
        them on their own connection only, and inside MULTI they answer at once without waiting, so a push of
        several chunks is MULTI, RPUSH…, EXEC, and the waits follow the EXEC.

        On a cluster, fsync also waits for a replica's acknowledgement (WAIT): a failover promotes a replica and
        never reads the dead primary's disk again. Not for the replica's own fsync (WAITAOF 1 1): a replica reports
        it in its once-a-second acknowledgement, which took 0.96 s per push here, past the push's deadline."""
        timeout_ms = max(1, int((deadline - asyncio.get_running_loop().time() - CONFIRM_MARGIN_S) * 1000))
        chunks = [records[start : start + PUSH_CHUNK] for start in range(0, len(records), PUSH_CHUNK)]
        wait_for_replica = self._durability is Durability.REPLICA or self._fsync_on_cluster
        async with holder_of(self.client, key) as server, server.pipeline(transaction=False) as pipe:
            if len(chunks) > 1:
                pipe.execute_command("MULTI")
            for chunk in chunks:
                pipe.rpush(key, *chunk)
            if len(chunks) > 1:
                pipe.execute_command("EXEC")
            if self._durability is Durability.FSYNC:
                pipe.waitaof(1, 0, timeout_ms)
            if wait_for_replica:
                pipe.wait(1, timeout_ms)
            replies = await pipe.execute()
        pushed = replies[len(chunks) + 1 if len(chunks) > 1 else 0]
        if len(chunks) > 1:
            # EXEC answers each command's error in its place (a transaction is not rolled back): raise the first.
            for reply in pushed:
                if isinstance(reply, RedisError):
                    raise reply
            pushed = pushed[-1]
        if self._durability is Durability.FSYNC and replies[-1 - wait_for_replica][0] < 1:
            raise NotConfirmed(f"Redis holds the push, but did not confirm its fsync within {timeout_ms} ms")
        if wait_for_replica and replies[-1] < 1:
            raise NotConfirmed(f"Redis holds the push, but no replica acknowledged it within {timeout_ms} ms")
        return cast(int, pushed)

    async def _record_shards(self) -> None:
        """Before the first push (and again now and then): the deployment's record of the shards that may hold
        records must include every shard this process pushes to, or a writer started with fewer would never look."""
        now = time.monotonic()
        if self._shards_recorded_at is not None and now - self._shards_recorded_at < RECORD_SHARDS_EVERY_S:
            return
        covered = await record_shards(self.client, self.keys, len(self._queues))
        if self._shards_recorded_at is None and covered > len(self._queues):
            logger.warning(
                "ANALYTICS_QUEUE_SHARDS is %s but %s shards have been used: pushes go to the first %s, writers keep "
                "draining all %s",
                len(self._queues),
                covered,
                len(self._queues),
                covered,
            )
        self._shards_recorded_at = now

    async def _over_cap(self) -> bool:
        """Each push returns its shard's length; only while their sum is over the cap are the shards re-read, at most
        every 100 ms."""
        if self._known_length < self._max_length:
            return False
        now = time.monotonic()
        if now - self._length_checked_at >= LENGTH_RECHECK_S:
            self._length_checked_at = now
            async with self.client.pipeline(transaction=False) as pipe:
                for key in self._queues:
                    pipe.llen(key)
                self._known_lengths = await pipe.execute()
            self._known_length = sum(self._known_lengths)
        full = self._known_length >= self._max_length
        if full != self._was_full:
            self._was_full = full
            if full:
                logger.warning("queue over its cap of %s events: ingestion answers 503", self._max_length)
            else:
                logger.info("queue back under its cap: ingestion resumes")
        return full
