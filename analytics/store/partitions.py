"""`events`' monthly partitions, kept by the writer itself: the month of every batch's events made before the batch is
stored, the next months made ahead, and, with a retention, the months past it dropped whole.

Only months near now get a partition (from PARTITIONED_YEARS back to AHEAD_MONTHS ahead): ingestion takes any
timestamp from 1970 on, and a partition per month anyone cares to post would be thousands of tables; the rest go to
the default partition, which a month's partition takes its rows from when it is made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final

import asyncpg

from analytics.events.contract import EPOCH
from analytics.events.record import Event
from analytics.store import queries

logger = logging.getLogger(__name__)

PARTITIONED_YEARS: Final = 5
AHEAD_MONTHS: Final = 2
# How often a lane makes the months ahead and applies the retention, on its way to a batch.
MAINTENANCE_INTERVAL_S: Final = 3600.0
_MICROSECONDS_PER_DAY: Final = 86_400_000_000


def month_of(ts_us: int) -> date:
    day = EPOCH.date() + timedelta(days=ts_us // _MICROSECONDS_PER_DAY)
    return day.replace(day=1)


def month_of_instant(instant: datetime) -> date:
    return instant.astimezone(UTC).date().replace(day=1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def months_from(first: date, last: date) -> list[date]:
    months = []
    while first <= last:
        months.append(first)
        first = add_months(first, 1)
    return months


class Partitions:
    """One writer lane's view of the partitions, so a batch of months already made costs no round trip."""

    def __init__(self, retention_days: int | None = None) -> None:
        self._retention = timedelta(days=retention_days) if retention_days else None
        self._known: set[date] | None = None
        self._maintained_at = -MAINTENANCE_INTERVAL_S

    async def before_batch(self, connection: asyncpg.Connection, events: Sequence[Event]) -> None:
        """Make the partitions `events` need (outside the batch's transaction: DDL takes locks the batch must not
        hold), and now and then the months ahead and the retention."""
        now = datetime.now(UTC)
        if time.monotonic() - self._maintained_at >= MAINTENANCE_INTERVAL_S:
            await self._maintain(connection, now)
        if not events:
            return
        current = now.date().replace(day=1)
        oldest = add_months(current, -12 * PARTITIONED_YEARS)
        if self._retention is not None:
            oldest = max(oldest, month_of_instant(now - self._retention))
        first = max(month_of(min(event.ts_us for event in events)), oldest)
        last = min(month_of(max(event.ts_us for event in events)), add_months(current, AHEAD_MONTHS))
        await self._ensure(connection, months_from(first, last))

    async def _ensure(self, connection: asyncpg.Connection, months: Sequence[date]) -> None:
        if self._known is None:
            self._known = {row["month"] for row in await connection.fetch(queries.PARTITIONS["partition_months"])}
        for month in months:
            if month not in self._known:
                if await connection.fetchval(queries.PARTITIONS["ensure_partition"], month):
                    logger.info("made the partition of events for %s", month.strftime("%Y-%m"))
                self._known.add(month)

    async def _maintain(self, connection: asyncpg.Connection, now: datetime) -> None:
        current = now.date().replace(day=1)
        await self._ensure(connection, months_from(current, add_months(current, AHEAD_MONTHS)))
        if self._retention is not None:
            row = await connection.fetchrow(queries.PARTITIONS["drop_before"], now - self._retention)
            assert row is not None
            if row["dropped"]:
                logger.info(
                    "retention: dropped %s; raw events are kept from %s", ", ".join(row["dropped"]), row["since"]
                )
                self._known = None
        self._maintained_at = time.monotonic()
