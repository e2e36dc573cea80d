"""The batch loop: claim from Redis → COPY into staging → idempotent merge into events → commit → ack."""

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

import asyncpg
import msgspec
from redis.exceptions import RedisError

from analytics.config import Settings
from analytics.db import ErrorKind, classify
from analytics.events import Queued, decode_record, event_key, now_ms
from analytics.logs import StateLog, describe_error
from analytics.metrics import Metrics
from analytics.queue import WriterQueue

logger = logging.getLogger(__name__)

STAGING_TABLE: Final = "staging_events"
STAGING_COLUMNS: Final = ("event_key", "site_id", "event_type", "path", "user_id", "ts_us", "accepted_ms")
INSERTED_COUNT_SQL: Final = "SELECT count(*) FROM inserted_events"

# Created once per connection (a temp table per batch churns the catalogs); emptied by every commit.
# inserted_events holds what the merge actually inserted: the only rows the rollups may count.
CREATE_STAGING_SQL: Final = """
CREATE TEMP TABLE IF NOT EXISTS staging_events (
    event_key uuid NOT NULL,
    site_id text COLLATE "C" NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    path text COLLATE "C",
    user_id text COLLATE "C",
    ts_us bigint NOT NULL,
    accepted_ms bigint NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS inserted_events (
    site_id text COLLATE "C" NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    day date NOT NULL,
    path text COLLATE "C",
    user_id text COLLATE "C"
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS new_daily_users (
    site_id text COLLATE "C" NOT NULL,
    user_md5 uuid NOT NULL
) ON COMMIT DELETE ROWS;
CREATE OR REPLACE TEMP VIEW new_page_views AS
SELECT site_id, day, path, user_id FROM inserted_events WHERE event_type = 'page_view';
"""

# One round trip (several statements, simple protocol), inside the batch's transaction. Every statement takes its
# row locks in key order (ORDER BY) and all writers run the same statements in the same order, so writers merging
# overlapping batches wait for each other but never deadlock. The timestamp is rebuilt from whole seconds plus
# microseconds because interval * bigint goes through float8 (inexact past 2^53 µs).
MERGE_SQL: Final = """
WITH inserted AS (
    INSERT INTO events (event_key, site_id, event_type, path, user_id, "timestamp")
    SELECT event_key, site_id, event_type, path, user_id,
           to_timestamp(ts_us / 1000000) + (ts_us % 1000000) * interval '1 microsecond'
    FROM staging_events
    ORDER BY event_key
    ON CONFLICT (event_key) DO NOTHING
    RETURNING site_id, event_type, path, user_id, "timestamp"
)
INSERT INTO inserted_events (site_id, event_type, day, path, user_id)
SELECT site_id, event_type, ("timestamp" AT TIME ZONE 'UTC')::date, path, user_id
FROM inserted;

INSERT INTO daily_path_views AS rollup (site_id, day, path_md5, path, views)
SELECT site_id, day, md5(path)::uuid, path, count(*)
FROM new_page_views
WHERE path IS NOT NULL
GROUP BY site_id, day, path
ORDER BY 1, 2, 3
ON CONFLICT (site_id, day, path_md5) DO UPDATE SET views = rollup.views + excluded.views;

WITH first_seen AS (
    INSERT INTO daily_users (site_id, day, user_md5)
    SELECT DISTINCT site_id, day, md5(user_id)::uuid
    FROM new_page_views
    WHERE user_id IS NOT NULL
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING site_id, day, user_md5
),
remembered AS (
    INSERT INTO new_daily_users (site_id, user_md5) SELECT site_id, user_md5 FROM first_seen
),
views AS (SELECT site_id, day, count(*) AS views FROM new_page_views GROUP BY 1, 2),
users AS (SELECT site_id, day, count(*) AS users FROM first_seen GROUP BY 1, 2)
INSERT INTO daily_totals AS rollup (site_id, day, views, users)
SELECT site_id, day, views.views, coalesce(users.users, 0)
FROM views LEFT JOIN users USING (site_id, day)
ORDER BY 1, 2
ON CONFLICT (site_id, day) DO UPDATE
SET views = rollup.views + excluded.views, users = rollup.users + excluded.users;

INSERT INTO site_path_views AS rollup (site_id, path_md5, path, views)
SELECT site_id, md5(path)::uuid, path, count(*)
FROM new_page_views
WHERE path IS NOT NULL
GROUP BY site_id, path
ORDER BY 1, 2
ON CONFLICT (site_id, path_md5) DO UPDATE SET views = rollup.views + excluded.views;

WITH first_seen AS (
    -- A user new to the site is new to that day too: only the users daily_users just saw first need checking.
    INSERT INTO site_users (site_id, user_md5)
    SELECT DISTINCT site_id, user_md5
    FROM new_daily_users
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING
    RETURNING site_id
),
views AS (SELECT site_id, count(*) AS views FROM new_page_views GROUP BY 1),
users AS (SELECT site_id, count(*) AS users FROM first_seen GROUP BY 1)
INSERT INTO site_totals AS rollup (site_id, views, users)
SELECT site_id, views.views, coalesce(users.users, 0)
FROM views LEFT JOIN users USING (site_id)
ORDER BY 1
ON CONFLICT (site_id) DO UPDATE
SET views = rollup.views + excluded.views, users = rollup.users + excluded.users;
"""

BACKOFF_BASE_S: Final = 0.1
BACKOFF_CAP_S: Final = 5.0
IDLE_WAIT_S: Final = 0.25


async def prepare(connection: asyncpg.Connection) -> None:
    """Once per connection: the staging tables the merge uses."""
    await connection.execute(CREATE_STAGING_SQL)


def staging_rows(records: Sequence[Queued]) -> list[tuple[object, ...]]:
    """What COPY puts in staging: each record, (site_id, event_type, path, user_id, ts_us, accepted_ms), keyed."""
    return [(event_key(record[0], record[1], record[3], record[2], record[4]), *record) for record in records]


async def merge(connection: asyncpg.Connection, records: Sequence[Queued]) -> int:
    """Store a batch idempotently and update the rollups from what it inserted, in one transaction.

    Returns how many events were new (the rest were already stored).
    """
    async with connection.transaction():
        await connection.copy_records_to_table(STAGING_TABLE, records=staging_rows(records), columns=STAGING_COLUMNS)
        await connection.execute(MERGE_SQL)
        inserted: int = await connection.fetchval(INSERTED_COUNT_SQL)
    return inserted


def new_writer_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def backoff_delay(attempt: int) -> float:
    """Capped exponential backoff with full jitter, so writers that failed together do not retry together."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class Writer:
    def __init__(self, settings: Settings, database_url: str, queue: WriterQueue, metrics: Metrics) -> None:
        self._settings = settings
        self._database_url = database_url
        self._queue = queue
        self._metrics = metrics
        self._connection: asyncpg.Connection | None = None
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
        async with asyncio.TaskGroup() as group:
            housekeeping = group.create_task(self._housekeeping())
            try:
                await self._loop()
            finally:
                housekeeping.cancel()
                await self._close()
        logger.info("writer %s stopped after storing %s events", self._queue.writer_id, self.stored)

    async def _loop(self) -> None:
        registered = False
        while not self._stop.is_set():
            try:
                if not registered:  # before the first claim, or recovery would never find this writer's batch
                    await self._queue.heartbeat()
                    registered = True
                batch = await self._collect()
                if batch:
                    await self._commit(batch)
                    await self._queue.ack()
                self._redis.recovered()
            except RedisError as error:
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
        records: list[Queued] = []
        kept: list[bytes] = []
        undecodable: list[tuple[bytes, str]] = []
        for data in batch:
            try:
                records.append(decode_record(data))
                kept.append(data)
            except msgspec.DecodeError as error:
                undecodable.append((data, f"undecodable record: {error}"))
        if undecodable:
            await self._dead_letter(undecodable)
        started = time.perf_counter()
        while True:
            try:
                inserted, rejected = await self._store(kept, records)
                self._database.recovered()
                self._operator_alerted = False
                break
            except Exception as error:
                # Poison never gets here (_store bisects it away); whatever the database says, the batch is kept.
                kind = classify(error)
                if kind is None:
                    raise
                await self._drop_connection()
                self._database_failed(error, kind)
                if self._stop.is_set():
                    returned = await self._queue.give_back()
                    logger.warning("stopping while PostgreSQL is unavailable: returned %s events", returned)
                    return
                await self._sleep(backoff_delay(self._database.failures))
        if rejected:
            await self._dead_letter(rejected)
        self._observe(records, inserted, rejected, time.perf_counter() - started)

    def _database_failed(self, error: Exception, kind: ErrorKind) -> None:
        """One line per outage: a warning for what passes by itself, an error for what needs a person to fix."""
        if kind is not ErrorKind.OPERATOR:
            self._database.failed(error)
            return
        if not self._operator_alerted:
            self._operator_alerted = True
            logger.error(
                "writer %s: postgresql refuses the batch and needs an operator (schema, permission, configuration, or "
                "an unclassified error); keeping it and retrying: %s",
                self._queue.writer_id,
                describe_error(error),
            )
        self._database.failures += 1  # the backoff grows, and the recovery is logged, as for any outage

    def _observe(self, records: Sequence[Queued], inserted: int, rejected: Sequence[object], seconds: float) -> None:
        self.stored += inserted
        self._metrics.events_stored.inc(inserted)
        self._metrics.events_duplicate.inc(len(records) - len(rejected) - inserted)
        self._metrics.batch_size.observe(len(records))
        self._metrics.write_seconds.observe(seconds)
        if records:
            oldest_ms = min(record[5] for record in records)
            self._metrics.lag_seconds.observe(max(0.0, (now_ms() - oldest_ms) / 1000))

    async def _dead_letter(self, failures: list[tuple[bytes, str]]) -> None:
        logger.warning("dead-lettered %s records: %s", len(failures), failures[0][1])
        await self._queue.dead_letter(failures)
        self._metrics.events_dead_lettered.inc(len(failures))

    async def _store(self, raw: Sequence[bytes], records: Sequence[Queued]) -> tuple[int, list[tuple[bytes, str]]]:
        """Write all records; a batch that PostgreSQL rejects is bisected down to the records at fault.

        Returns how many were inserted, and the records rejected with their reasons.
        """
        if not records:
            return 0, []
        connection = await self._connect()
        try:
            return await merge(connection, records), []
        except Exception as error:
            if classify(error) is not ErrorKind.POISON:
                raise
            if len(records) == 1:
                return 0, [(raw[0], f"rejected by PostgreSQL: {describe_error(error)}")]
        middle = len(records) // 2
        first_inserted, first_rejected = await self._store(raw[:middle], records[:middle])
        second_inserted, second_rejected = await self._store(raw[middle:], records[middle:])
        return first_inserted + second_inserted, first_rejected + second_rejected

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            connection: asyncpg.Connection = await asyncpg.connect(self._database_url, timeout=5, command_timeout=60)
            try:
                await prepare(connection)
            except BaseException:
                connection.terminate()  # e.g. a read-only server refuses the staging tables: do not leak it
                raise
            self._connection = connection
        return self._connection

    async def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None

    async def _close(self) -> None:
        if self._connection is not None:
            try:
                await self._connection.close(timeout=5)
            except Exception as error:
                if classify(error) is None:
                    raise
                self._connection.terminate()  # whatever the server said, this connection is done
            self._connection = None
        with contextlib.suppress(RedisError):
            # Anything still in processing (a stop mid-claim) goes back before this writer stops being recoverable.
            await self._queue.give_back()
            await self._queue.retire()

    async def _housekeeping(self) -> None:
        """Beat the heartbeat often enough to survive two misses; recover dead writers' batches."""
        interval = self._settings.heartbeat_ttl_s / 3
        next_recovery = 0.0
        while True:
            try:
                await self._queue.heartbeat()
                self._metrics.heartbeats.inc()
                if time.monotonic() >= next_recovery:
                    await self._queue.recover_orphans()
                    next_recovery = time.monotonic() + self._settings.heartbeat_ttl_s
            except RedisError:
                pass  # the main loop reports Redis outages
            await asyncio.sleep(interval)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
