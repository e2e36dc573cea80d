"""The writer's batch, stored: the partitions its months need (store/partitions.py), then COPY into a staging table
and one idempotent merge into `events` that also keeps the rollups, in one transaction. A re-delivered batch inserts
nothing and so counts nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg
import msgspec

from analytics.errors import UnwritableRecords
from analytics.events.record import Event, event_key
from analytics.store import queries
from analytics.store.connect import CLOSE_TIMEOUT_S, connect_writer
from analytics.store.failures import translated
from analytics.store.partitions import Partitions

STAGING_TABLE: Final = "staging_events"
# The merge, the visits it rebuilds and the report cells, sent as one round trip; an erasure runs the visit rebuild
# on its own.
MERGE: Final = queries.WRITER["merge"] + queries.WRITER["rebuild_visits"] + queries.WRITER["count_cells"]
# The Event's fields in its own order, after the key: a staging row is the key and the record's fields.
STAGING_COLUMNS: Final = ("event_key", *Event.__struct_fields__)


async def prepare(connection: asyncpg.Connection) -> None:
    """Once per connection: the staging tables the merge uses."""
    await connection.execute(queries.WRITER["create_staging"])


def staging_rows(events: Sequence[Event]) -> list[tuple[object, ...]]:
    """What COPY puts in staging: each event with its idempotency key."""
    return [(event_key(event), *msgspec.structs.astuple(event)) for event in events]


async def merge(connection: asyncpg.Connection, events: Sequence[Event]) -> int:
    """Store a batch idempotently and update the rollups from what it inserted, in one transaction.

    Returns how many events were new (the rest were already stored).
    """
    async with connection.transaction():
        await connection.copy_records_to_table(STAGING_TABLE, records=staging_rows(events), columns=STAGING_COLUMNS)
        await connection.execute(MERGE)
        inserted: int = await connection.fetchval(queries.WRITER["inserted_count"])
    return inserted


class EventStore:
    """One writer lane's connection and its batches. Raises the project's database errors, never asyncpg's."""

    def __init__(self, database_url: str, retention_days: int = 0) -> None:
        self._database_url = database_url
        self._connection: asyncpg.Connection | None = None
        self._partitions = Partitions(retention_days)

    async def write(self, events: Sequence[Event]) -> int:
        """Merge `events`; returns how many were new.

        Refused rows roll the transaction back and leave the connection usable (bisection reuses it); after any
        other failure its state is unknown, so it is dropped.
        """
        try:
            with translated():
                connection = await self._connect()
                await self._partitions.before_batch(connection, events)
                return await merge(connection, events)
        except UnwritableRecords:
            raise
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
