"""The writer against real PostgreSQL conditions: what passes is waited out, what a person must fix is retried
loudly, and only rows that can never be written are dead-lettered. Nothing kills the writer."""

from __future__ import annotations

import logging

import asyncpg
import pytest
import redis.asyncio as aioredis

from analytics.events.record import Event, encode_event
from analytics.queue.dead_letters import decode_dead_letter
from analytics.queue.keys import QueueKeys
from analytics.writer.loop import Writer
from tests.helpers.waiting import eventually

T0 = 1_762_975_801_000_000  # 2025-11-12T19:30:01Z in microseconds
WRITER_LOGGER = "analytics.writer.loop"


def records(count: int) -> list[bytes]:
    return [encode_event(Event("s", "page_view", "/p", f"u{n}", T0 + n)) for n in range(count)]


async def stored(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM events")
    return count


async def until_stored(db: asyncpg.Connection, expected: int) -> None:
    async def check() -> None:
        assert await stored(db) == expected

    await eventually(check, timeout_s=20)


async def until_logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    async def check() -> list[logging.LogRecord]:
        found = [entry for entry in caplog.records if entry.name == WRITER_LOGGER and text in entry.getMessage()]
        assert found, caplog.text
        return found

    return await eventually(check, timeout_s=10)


async def held_in_redis(redis: aioredis.Redis, keys: QueueKeys) -> int:
    held: int = await redis.llen(keys.queue)
    async for key in redis.scan_iter(match=f"{{{keys.prefix}}}:processing:*"):
        held += await redis.llen(key)
    return held


async def test_read_only_database_is_waited_out_and_nothing_is_lost(
    writer: Writer, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=WRITER_LOGGER)
    name = await db.fetchval("SELECT current_database()")
    # New sessions of this database only (the writer connects on its first batch): failover and maintenance do this.
    await db.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        await redis.rpush(keys.queue, *records(100))
        [down] = await until_logged(caplog, "postgresql unavailable")
        assert "ReadOnlySQLTransactionError" in down.getMessage()
        assert down.levelno == logging.WARNING, "a read-only server passes by itself: a warning"
        assert await held_in_redis(redis, keys) == 100, "the batch waits in Redis"
    finally:
        await db.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    await until_stored(db, 100)
    await until_logged(caplog, "postgresql available again")
    assert await redis.llen(keys.dead) == 0


async def test_missing_table_is_retried_and_logged_as_an_error_never_dead_lettered(
    writer: Writer, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=WRITER_LOGGER)
    await db.execute("ALTER TABLE events RENAME TO events_elsewhere")
    try:
        await redis.rpush(keys.queue, *records(100))
        [alert] = await until_logged(caplog, "needs an operator")
        assert alert.levelno == logging.ERROR
        assert "UndefinedTableError" in alert.getMessage()
        assert await held_in_redis(redis, keys) == 100
        assert await redis.llen(keys.dead) == 0, "a schema problem is not the data's fault"
    finally:
        await db.execute("ALTER TABLE events_elsewhere RENAME TO events")
    await until_stored(db, 100)
    await until_logged(caplog, "postgresql available again")
    assert await redis.llen(keys.dead) == 0


async def test_number_asyncpg_cannot_encode_is_dead_lettered_and_the_rest_stored(
    writer: Writer, redis: aioredis.Redis, keys: QueueKeys, db: asyncpg.Connection
) -> None:
    """A record written to the queue by something else: its timestamp does not fit int8, COPY raises OverflowError."""
    good = records(40)
    out_of_range = encode_event(Event("s", "page_view", "/p", "far", 2**63))
    await redis.rpush(keys.queue, *good[:20], out_of_range, *good[20:])
    await until_stored(db, 40)
    [letter] = [decode_dead_letter(entry) for entry in await redis.lrange(keys.dead, 0, -1)]
    assert letter.data == out_of_range
    assert letter.reason.startswith("rejected by PostgreSQL: OverflowError")
