"""A writer lane's life: claim a batch from Redis, store it, ack it; heartbeat and recover dead lanes' batches
meanwhile; on stop, commit or give back what it holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Sequence
from typing import Final

from analytics.config import Settings
from analytics.errors import DatabaseError, DatabaseNeedsOperator, QueueUnavailable
from analytics.events.record import Event, now_ms
from analytics.observability.logs import StateLog
from analytics.observability.metrics import Metrics
from analytics.queue.consumer import WriterQueue
from analytics.writer.batch import Failure, decode_batch
from analytics.writer.slices import Slices

logger = logging.getLogger(__name__)

BACKOFF_BASE_S: Final = 0.1
BACKOFF_CAP_S: Final = 5.0
IDLE_WAIT_S: Final = 0.25


def new_writer_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def backoff_delay(attempt: int) -> float:
    """Capped exponential backoff with full jitter, so writers that failed together do not retry together."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class Writer:
    def __init__(self, settings: Settings, slices: Slices, queue: WriterQueue, metrics: Metrics) -> None:
        self._settings = settings
        self._slices = slices
        slices.attach()
        self._queue = queue
        self._metrics = metrics
        self._stop = asyncio.Event()
        name = f"writer {queue.writer_id}"
        self._redis = StateLog(
            logger, f"{name}: redis unavailable, retrying with backoff", f"{name}: redis available again"
        )
        self._database = StateLog(
            logger,
            f"{name}: postgresql unavailable, keeping its batch and retrying",
            f"{name}: postgresql available again",
        )
        self._operator_alerted = False  # an error that needs a person was logged during the current outage
        self.stored = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until `stop()`: commit batches; on the way out, commit or give back what it holds."""
        logger.info("writer %s started", self._queue.writer_id)
        finished = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            housekeeping = group.create_task(self._housekeeping(finished))
            try:
                await self._loop()
            finally:
                # Told, not cancelled: a cancellation landing inside a redis-py command can come back as a connection
                # error, which housekeeping takes for an outage and carries on (a stop that never ended, seen under
                # load). Told, it ends after its current command, bounded by the client's socket timeout.
                finished.set()
                await housekeeping
                await self._close()
        logger.info("writer %s stopped after storing %s events", self._queue.writer_id, self.stored)

    async def _loop(self) -> None:
        """One batch per turn on a shard (`WriterQueue.take_turn`); a turn ends only after its batch was acked or
        given back, so a Redis error mid-turn resumes the same shard from what its processing list holds."""
        counted = False
        while not self._stop.is_set():
            try:
                if not counted:  # the shards that may hold records, recorded before this lane moves any
                    await self._queue.refresh_shards()
                    counted = True
                if not self._queue.in_turn:
                    await self._queue.take_turn()  # registers in the shard before the first claim there
                batch = await self._collect()
                if batch:
                    await self._commit(batch)
                    await self._queue.ack()
                await self._queue.end_turn()
                self._redis.recovered()
            except QueueUnavailable as error:
                self._redis.failed(error)
                await self._sleep(backoff_delay(self._redis.failures))

    async def _collect(self) -> list[bytes]:
        """Wait for a first record, then fill up to the batch size for at most the flush interval.

        The processing list, not memory, is the batch: a Redis error half-way through a claim leaves records there,
        and the next ack would delete them unwritten. So every batch starts from what this writer already holds.
        """
        size = self._settings.batch_size
        batch = await self._queue.held()
        if len(batch) >= size:
            return batch
        if not batch:
            first = await self._queue.take_first(IDLE_WAIT_S)
            if first is None:
                return []
            batch = [first]
        deadline = time.monotonic() + self._settings.flush_interval_s
        batch += await self._queue.claim(size - len(batch))
        if len(batch) < size:
            await self._sleep(deadline - time.monotonic())
            batch += await self._queue.claim(size - len(batch))
        return batch

    async def _commit(self, batch: list[bytes]) -> None:
        """Store the batch or, if stopping while PostgreSQL is away, give it back to the queue."""
        decoded = decode_batch(batch)
        if decoded.undecodable:
            await self._dead_letter(decoded.undecodable)
        started = time.perf_counter()
        while True:
            try:
                inserted, refused = await self._slices.write(decoded.raw, decoded.events)
                self._database.recovered()
                self._operator_alerted = False
                break
            except DatabaseError as error:
                # Refused rows never get here (bisected away): whatever else the database says, the batch is kept.
                self._database_failed(error)
                if self._stop.is_set():
                    returned = await self._queue.give_back()
                    logger.warning("stopping while PostgreSQL is unavailable: returned %s events", returned)
                    return
                await self._sleep(backoff_delay(self._database.failures))
        if refused:
            await self._dead_letter(refused)
        self._observe(decoded.events, inserted, refused, time.perf_counter() - started)

    def _database_failed(self, error: DatabaseError) -> None:
        """One line per outage: a warning for what passes by itself, an error for what needs a person to fix."""
        if not isinstance(error, DatabaseNeedsOperator):
            self._database.failed(error)
            return
        if not self._operator_alerted:
            self._operator_alerted = True
            logger.error(
                "writer %s: postgresql refuses the batch and needs an operator (schema, permission, configuration, or "
                "an unclassified error); keeping it and retrying: %s",
                self._queue.writer_id,
                error,
            )
        self._database.failures += 1  # the backoff grows, and the recovery is logged, as for any outage

    def _observe(self, events: Sequence[Event], inserted: int, refused: Sequence[Failure], seconds: float) -> None:
        self.stored += inserted
        self._metrics.events_stored.inc(inserted)
        self._metrics.events_duplicate.inc(len(events) - len(refused) - inserted)
        self._metrics.batch_size.observe(len(events))
        self._metrics.write_seconds.observe(seconds)
        if events:
            oldest_ms = min(event.accepted_ms for event in events)
            self._metrics.lag_seconds.observe(max(0.0, (now_ms() - oldest_ms) / 1000))

    async def _dead_letter(self, failures: list[Failure]) -> None:
        logger.warning("dead-lettered %s records: %s", len(failures), failures[0][1])
        await self._queue.dead_letter(failures)
        self._metrics.events_dead_lettered.inc(len(failures))

    async def _close(self) -> None:
        await self._slices.release()
        with contextlib.suppress(QueueUnavailable):
            # Anything still in processing (a stop mid-claim) goes back before this writer stops being recoverable.
            await self._queue.give_back()
            await self._queue.retire()

    async def _housekeeping(self, finished: asyncio.Event) -> None:
        """Until the lane's loop has `finished`: beat the heartbeat (and renew the lease) often enough to survive two
        misses; recover dead writers' batches in every shard."""
        interval = self._settings.heartbeat_ttl_s / 3
        next_recovery = 0.0
        while not finished.is_set():
            try:
                await self._queue.heartbeat()
                self._metrics.heartbeats.inc()
                if time.monotonic() >= next_recovery:
                    await self._queue.refresh_shards()  # an api started with more shards is covered from here on
                    await self._queue.recover_orphans()
                    next_recovery = time.monotonic() + self._settings.heartbeat_ttl_s
            except QueueUnavailable:
                pass  # the main loop reports Redis outages
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), interval)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
