"""The distinct keeper: a side task of the writer role that counts each past UTC day's distinct visitors and users
per site from the report cells and keeps them (analytics/stats/cells.py: `keep_day`), and the day's values of every
dimension from raw events, which unfiltered breakdowns read (analytics/stats/values.py: `keep_day_values`).

A report's first request for a period otherwise counts every day of it from the cells' hash sets, which lie
scattered over the cells table (the writer appends all sites' cells in time order): on the 10M-event bench that was
11 of a cold 30-day aggregate's 17 ms. With the days kept, an unfiltered report in any zone unions a kept set per
whole UTC day and counts only the parts of a day at its ends (analytics/stats/cells.py); a series by local day in
another zone still counts its days from the cells on its first request. The first pass covers the last KEEP_DAYS
days; later passes the last RECHECK_DAYS, which late events change (a kept day whose cells no longer sum to the
events it was counted from is counted again).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

import asyncpg

from analytics.errors import DatabaseError
from analytics.observability.logs import describe_error
from analytics.stats.cells import keep_day
from analytics.stats.values import keep_day_values, keep_week_values
from analytics.store import queries
from analytics.store.failures import translated

logger = logging.getLogger(__name__)

# A year-long period (12mo, year) ends within these days; longer ranges count their older days on first request.
KEEP_DAYS: Final = 400
RECHECK_DAYS: Final = 2
PASS_INTERVAL_S: Final = 600.0
# Sites a transaction keeps at most: each holds a shared advisory lock to the transaction's end.
SITES_PER_TRANSACTION: Final = 100


class DistinctKeeper:
    def __init__(self, pool: asyncpg.Pool, pass_interval_s: float = PASS_INTERVAL_S) -> None:
        self._pool = pool
        self._pass_interval_s = pass_interval_s
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until `stop()`: a pass, then a pause. A database outage only delays the next pass; the writer reports it."""
        days = KEEP_DAYS
        while not self._stop.is_set():
            try:
                kept = await keep_past_days(self._pool, datetime.now(UTC).date(), days, self._stop)
            except DatabaseError as error:
                logger.warning("distinct keeper: pass failed, retrying later: %s", describe_error(error))
            else:
                if kept:
                    logger.info(
                        "distinct keeper: kept distinct sets of %s site-days, values of %s, week sums of %s site-weeks",
                        kept.distincts,
                        kept.values,
                        kept.weeks,
                    )
                days = RECHECK_DAYS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._pass_interval_s)


@dataclass(frozen=True, slots=True)
class KeptDays:
    """Site-days a pass kept: distinct sets, and values (analytics/stats/values.py); and site-weeks of value sums."""

    distincts: int = 0
    values: int = 0
    weeks: int = 0

    def __bool__(self) -> bool:
        return bool(self.distincts or self.values or self.weeks)


async def keep_past_days(pool: asyncpg.Pool, today: date, days: int, stop: asyncio.Event | None = None) -> KeptDays:
    """Keep the distinct sets and values of the `days` UTC days before `today` that need it, oldest first, then the
    week sums of the weeks among them whose seven days are kept; what was kept. Stops early when `stop` is set or
    another keeper is at work."""
    kept = {"keep_distincts": 0, "keep_values": 0}
    for back in range(days, 0, -1):
        if stop is not None and stop.is_set():
            break
        start = datetime.combine(today - timedelta(days=back), time(), UTC)
        day = start, start + timedelta(days=1)
        with translated():
            async with pool.acquire() as connection:
                rows = await connection.fetch(queries.KEEPER["day_sites_to_keep"], *day)
                for keep, column in ((keep_day, "keep_distincts"), (keep_day_values, "keep_values")):
                    sites = [row["site_id"] for row in rows if row[column]]
                    for offset in range(0, len(sites), SITES_PER_TRANSACTION):
                        done = await keep(connection, day, sites[offset : offset + SITES_PER_TRANSACTION])
                        if done is None:
                            return KeptDays(kept["keep_distincts"], kept["keep_values"])
                        kept[column] += done
    weeks = await _keep_weeks(pool, today, days, stop)
    return KeptDays(kept["keep_distincts"], kept["keep_values"], weeks)


async def _keep_weeks(pool: asyncpg.Pool, today: date, days: int, stop: asyncio.Event | None) -> int:
    """The week sums of every ISO week wholly within the `days` days before `today` that needs them
    (a recheck of the last days reaches back to its week's Monday, since keeping a day again forgot its week)."""
    first = today - timedelta(days=days)
    monday = datetime.combine(first - timedelta(days=first.weekday()), time(), UTC)
    end = datetime.combine(today - timedelta(days=today.weekday()), time(), UTC)
    kept = 0
    with translated():
        async with pool.acquire() as connection:
            rows = await connection.fetch(queries.KEEPER["week_sites_to_keep"], monday, end)
            for week, group in itertools.groupby(rows, key=lambda row: row["week"]):
                sites = [row["site_id"] for row in group]
                for offset in range(0, len(sites), SITES_PER_TRANSACTION):
                    if stop is not None and stop.is_set():
                        return kept
                    done = await keep_week_values(connection, week, sites[offset : offset + SITES_PER_TRANSACTION])
                    if done is None:
                        return kept
                    kept += done
    return kept
