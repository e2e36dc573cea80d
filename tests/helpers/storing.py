"""A batch stored and counted at once, as a writer lane and the counting lane do in turn, for tests that look at the
rollups, visits or cells right after."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from analytics.events.record import Event
from analytics.store.events import count_everything, store


async def store_and_count(connection: asyncpg.Connection, events: Sequence[Event]) -> int:
    """Store `events` (returns how many were new), then count everything pending, waiting for the counting lock as
    long as another connection's step holds it."""
    inserted = await store(connection, events)
    await count_all_pending(connection)
    return inserted


async def count_all_pending(connection: asyncpg.Connection) -> None:
    async with connection.transaction():
        await count_everything(connection)


async def assert_all_counted(database: asyncpg.Connection | asyncpg.Pool) -> None:
    """Nothing stored waits to be counted: for `eventually` checks, beside the stored count, before reading stats."""
    assert not await database.fetchval("SELECT EXISTS (SELECT FROM uncounted_events)"), "events wait to be counted"
