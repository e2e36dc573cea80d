"""How this service connects to PostgreSQL, in one place: the stats pools (DATABASE_URL's, and STATS_DATABASE_URL's when
set) and the writer's own connections."""

from __future__ import annotations

from typing import Final

import asyncpg

from analytics.store.failures import translated

# Stats: connections open lazily (min_size=0), so the api starts, and ingests, while PostgreSQL is down. Callers bound
# each answer by their own deadline, shorter than these.
POOL_COMMAND_TIMEOUT_S: Final = 30.0
POOL_IDLE_LIFETIME_S: Final = 60.0
# Reports run the same statements for sites of every size (asyncpg prepares each once per connection): after five
# runs PostgreSQL would keep a generic plan costed for an average site, and a busiest site's 10M-event breakdown then
# took 2.4 s instead of 1.3 s; custom plans cost a fraction of a millisecond to make. JIT compilation cost more than it
# saved on reports over many events (a busiest site's 30-day aggregate at 10M: 940 ms with it, 700 ms without).
# bench/RESULTS.md "v2 reports latency against event count" and "reports without JIT".
POOL_SETTINGS: Final = {"jit": "off", "plan_cache_mode": "force_custom_plan"}
# The writer: one connection per lane, kept while it works; a batch's COPY and merge may take a while under load.
WRITER_CONNECT_TIMEOUT_S: Final = 5.0
WRITER_COMMAND_TIMEOUT_S: Final = 60.0
CLOSE_TIMEOUT_S: Final = 5.0


async def create_pool(database_url: str, size: int) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url,
        min_size=0,
        max_size=size,
        command_timeout=POOL_COMMAND_TIMEOUT_S,
        max_inactive_connection_lifetime=POOL_IDLE_LIFETIME_S,
        server_settings=POOL_SETTINGS,
    )
    return pool


async def ping_database(pool: asyncpg.Pool) -> None:
    with translated():
        await pool.fetchval("SELECT 1")


async def connect_writer(database_url: str) -> asyncpg.Connection:
    connection: asyncpg.Connection = await asyncpg.connect(
        database_url, timeout=WRITER_CONNECT_TIMEOUT_S, command_timeout=WRITER_COMMAND_TIMEOUT_S
    )
    return connection
