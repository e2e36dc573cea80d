"""The distinct keeper's transactions (analytics/stats/keeper.py): whatever a keeper keeps, one keeper works at a
time, and never for a site an erasure is under way for (store/sql/keeper.sql: `one_distinct_keeper`,
`sites_may_keep_distincts`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from analytics.store import queries

Connection = asyncpg.Connection | PoolConnectionProxy


@contextlib.asynccontextmanager
async def keeping(connection: Connection, sites: Sequence[str]) -> AsyncIterator[list[str] | None]:
    """A transaction holding the keeper's lock, and of `sites` those it may keep, locked against erasures to its
    end; None when another keeper is at work."""
    async with connection.transaction():
        if not await connection.fetchval(queries.KEEPER["one_distinct_keeper"]):
            yield None
            return
        yield [row["site"] for row in await connection.fetch(queries.KEEPER["sites_may_keep_distincts"], sites)]
