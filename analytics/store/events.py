"""The writer's batch, stored: the partitions its months need (store/partitions.py), then COPY into a staging table
and one idempotent statement that stores the new events and lists them as uncounted, in one transaction; and the
counting step, which counts many batches' uncounted events into the rollups, visits and report cells in another
(store/sql/writer.sql). A re-delivered batch inserts nothing and so lists nothing to count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from analytics.errors import UnwritableRecords
from analytics.events.record import Event, event_key
from analytics.store import queries
from analytics.store.connect import CLOSE_TIMEOUT_S, connect_writer
from analytics.store.failures import translated
from analytics.store.partitions import Partitions

STAGING_TABLE: Final = "staging_events"
# A counting step's statements after it took its events: the rollups, the visits they change and the report cells,
# sent as one round trip. An erasure runs the visit rebuild on its own.
COUNT: Final = queries.WRITER["count_rollups"] + queries.WRITER["rebuild_visits"] + queries.WRITER["count_cells"]
# The most events one counting step takes: many batches' worth, so that each rollup row changes once for all of them,
# and few enough that a step commits in about a second here.
COUNT_STEP_EVENTS: Final = 50_000
# Sites are counted in this many buckets (a hash of the site id), one step per bucket at a time: as many steps can run
# side by side, on as many cores. The same in every process of a deployment.
COUNTING_BUCKETS: Final = 8
# The Event's fields in its own order, after the key: a staging row is the key and the record's fields.
STAGING_COLUMNS: Final = ("event_key", *Event.__struct_fields__)


async def prepare(connection: asyncpg.Connection) -> None:
    """Once per connection: the temporary tables a batch and a counting step use."""
    await connection.execute(queries.WRITER["create_staging"])


def staging_rows(events: Sequence[Event]) -> list[tuple[object, ...]]:
    """What COPY puts in staging: each event with its idempotency key."""
    return [(event_key(event), *msgspec.structs.astuple(event)) for event in events]


async def store(connection: asyncpg.Connection, events: Sequence[Event]) -> int:
    """Store a batch idempotently and list what it inserted as uncounted, in one transaction.

    Returns how many events were new (the rest were already stored).
    """
    async with connection.transaction():
        await connection.copy_records_to_table(STAGING_TABLE, records=staging_rows(events), columns=STAGING_COLUMNS)
        inserted: int = await connection.fetchval(queries.WRITER["store"])
    return inserted


async def count_pending(
    connection: asyncpg.Connection | PoolConnectionProxy, bucket: int, limit: int | None = COUNT_STEP_EVENTS
) -> int | None:
    """One counting step: take up to `limit` uncounted events of the `bucket`'s sites and count them, in one
    transaction. Returns how many it counted, or None when another step (or an erasure) holds the bucket."""
    async with connection.transaction():
        if not await connection.fetchval(queries.WRITER["try_counting_lock"], bucket):
            return None
        await connection.execute(queries.WRITER["take_uncounted"], limit, bucket, COUNTING_BUCKETS)
        counted: int = await connection.fetchval(queries.WRITER["counted_count"])
        if counted:
            await connection.execute(COUNT)
    return counted


async def count_everything(connection: asyncpg.Connection | PoolConnectionProxy) -> int:
    """Wait for the steps in flight, hold back the next ones until the caller's transaction ends (every bucket's lock,
    in order), and count every event still uncounted. Inside a transaction: an erasure's, or a test's."""
    for bucket in range(COUNTING_BUCKETS):
        await connection.execute(queries.WRITER["counting_lock"], bucket)
    await connection.execute(queries.WRITER["take_uncounted"], None, 0, 1)
    counted: int = await connection.fetchval(queries.WRITER["counted_count"])
    if counted:
        await connection.execute(COUNT)
    await connection.execute(queries.WRITER["forget_counted"])
    return counted


class EventStore:
    """One writer lane's connection and its batches. Raises the project's database errors, never asyncpg's."""

    def __init__(self, database_url: str, retention_days: int = 0) -> None:
        self._database_url = database_url
        self._connection: asyncpg.Connection | None = None
        self._partitions = Partitions(retention_days)

    async def write(self, events: Sequence[Event]) -> int:
        """Store `events`; returns how many were new.

        Refused rows roll the transaction back and leave the connection usable (bisection reuses it); after any
        other failure its state is unknown, so it is dropped.
        """
        try:
            with translated():
                connection = await self._connect()
                await self._partitions.before_batch(connection, events)
                return await store(connection, events)
        except UnwritableRecords:
            raise
        except BaseException:
            self.discard()
            raise

    async def count(self, bucket: int, limit: int = COUNT_STEP_EVENTS) -> int | None:
        """One counting step (`count_pending`) on this store's connection; dropped after any failure."""
        try:
            with translated():
                return await count_pending(await self._connect(), bucket, limit)
        except BaseException:
            self.discard()
            raise

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            connection = await connect_writer(self._database_url)
            try:
                await prepare(connection)
            except BaseException:
                connection.terminate()  # e.g. a read-only server refuses the staging tables: do not leak it
                raise
            self._connection = connection
        return self._connection

    def discard(self) -> None:
        """Cut the connection without a goodbye: after an error its state is unknown."""
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None

    async def close(self) -> None:
        if self._connection is not None:
            try:
                with translated():
                    await self._connection.close(timeout=CLOSE_TIMEOUT_S)
            except Exception:
                self._connection.terminate()  # whatever the server said, this connection is done
            self._connection = None
