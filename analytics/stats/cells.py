"""Unfiltered aggregates and time series from the report cells (migrations/0012.report_cells.sql), whose bounds all
fall on 15-minute UTC cells: every sum by reading a row per cell of the period, whatever the number of events.

Distinct visitors and users do not add up. An hour's come from its cells' hash sets. A day's, week's or month's
(or a whole aggregate's) are counted once from the cells and kept (migrations/0013.report_distincts.sql) once the
range is over; a range longer than a day is the union of its whole UTC days' sets (which the distinct keeper keeps
in the background) and of the parts of a day at either end, so a range that runs to now recounts only today, and a
month in Asia/Kolkata reads about a day of cells. A kept count holds while its range's cells sum to the events it
was counted from.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from analytics.stats import sketch
from analytics.stats.keeping import keeping
from analytics.stats.periods import DateRange, buckets
from analytics.stats.sketch import DistinctSet
from analytics.stats.tally import Tally
from analytics.store import queries

CELL_SECONDS: Final = 900
ONE_DAY: Final = timedelta(days=1)

Connection = asyncpg.Connection | PoolConnectionProxy
Range = tuple[datetime, datetime]


def on_cell_grid(instants: Iterable[datetime]) -> bool:
    """Whether every instant is a report cell's bound: true of every local hour, day, week and month start of a zone
    whose offset is a multiple of 15 minutes (all of them today; not, e.g., Africa/Monrovia's -00:44:30 of 1971)."""
    return all(instant.microsecond == 0 and int(instant.timestamp()) % CELL_SECONDS == 0 for instant in instants)


@dataclass(frozen=True, slots=True)
class CellReport:
    """Tallies by bucket number (from 1); `approximate` when a distinct count is an estimate."""

    tallies: dict[int, Tally] = field(default_factory=dict)
    approximate: bool = False

    def at(self, bucket: int) -> Tally:
        return self.tallies.get(bucket) or Tally()


@dataclass(frozen=True, slots=True)
class Counted:
    """A range's distinct sets, and the events its cells summed to when they were counted."""

    events: int
    visitors: DistinctSet
    users: DistinctSet


# A range whose cells went between two reads (an erasure): nothing to count.
NOTHING: Final = Counted(0, sketch.EMPTY, sketch.EMPTY)


async def cell_report(
    connection: Connection,
    site_id: str,
    span: DateRange,
    starts: Sequence[datetime],
    *,
    hourly: bool,
    distinct: bool,
) -> CellReport:
    """The tallies of the buckets starting at `starts` (local days, weeks or months, or hours when `hourly`);
    visitors and users only when `distinct`."""
    ranges = list(zip(starts, [*starts[1:], span.end], strict=True))
    if hourly:
        return await _hourly(connection, site_id, ranges, distinct)
    days = [bucket.start for bucket in buckets(span, "day")]
    segments = _Segments(sorted({*days, *_utc_midnights(span.start, span.end)}))
    rows = await connection.fetch(queries.REPORTS["cell_sums"], site_id, span.start, span.end, segments.starts)
    for row in rows:
        segments.sums[row["bucket"] - 1] = _sums(row)
    report = CellReport()
    events: dict[Range, int] = {}
    parts: dict[Range, list[Range]] = {}
    for number, bucket in enumerate(ranges, start=1):
        tally = report.tallies[number] = segments.total(bucket)
        if tally.events and distinct:
            events[bucket] = tally.events
            one_day = bisect.bisect_left(days, bucket[1]) - bisect.bisect_left(days, bucket[0]) == 1
            pieces = [(piece, segments.total(piece).events) for piece in ([bucket] if one_day else _by_utc_day(bucket))]
            events.update((piece, count) for piece, count in pieces if count)
            parts[bucket] = [piece for piece, count in pieces if count]
    approximate = await _count_distincts(connection, site_id, report.tallies, ranges, parts, events)
    return CellReport(report.tallies, approximate)


class _Segments:
    """The period cut at every local day start and every UTC midnight, with each piece's sums: what any bucket, UTC
    day or part of one in the period adds up to."""

    def __init__(self, starts: list[datetime]) -> None:
        self.starts = starts
        self.sums: dict[int, Tally] = {}

    def total(self, bounds: Range) -> Tally:
        tally = Tally()
        for index in range(bisect.bisect_left(self.starts, bounds[0]), bisect.bisect_left(self.starts, bounds[1])):
            if index in self.sums:
                tally.add_sums(self.sums[index])
        return tally


def _utc_midnights(start: datetime, end: datetime) -> list[datetime]:
    """The UTC midnights strictly between `start` and `end`."""
    midnight = datetime.combine(start.astimezone(UTC).date(), time(), UTC) + ONE_DAY
    found = []
    while midnight < end:
        found.append(midnight)
        midnight += ONE_DAY
    return found


def _by_utc_day(bounds: Range) -> list[Range]:
    """A range longer than a day cut at UTC midnights: the whole UTC days in it, which the distinct keeper keeps
    (stats/keeper.py), and the parts of a day at either end, so that in any zone a month is counted from about a
    day of cells, not thirty."""
    cuts = [bounds[0], *_utc_midnights(*bounds), bounds[1]]
    return list(itertools.pairwise(cuts))


async def _hourly(connection: Connection, site_id: str, ranges: Sequence[Range], distinct: bool) -> CellReport:
    """Hours are counted from their cells each time: a series has many, each of at most four cells."""
    report = CellReport()
    starts, ends = _columns(ranges)
    for row in await connection.fetch(queries.REPORTS["cell_sums"], site_id, starts[0], ends[-1], starts):
        report.tallies[row["bucket"]] = _sums(row)
    counted = await _count_from_cells(connection, site_id, ranges) if distinct else {}
    for number, hour in enumerate(ranges, start=1):
        if hour in counted:
            tally = report.tallies.setdefault(number, Tally())
            tally.visitors, tally.users = counted[hour].visitors.count, counted[hour].users.count
    return report


async def _count_distincts(
    connection: Connection,
    site_id: str,
    tallies: dict[int, Tally],
    ranges: Sequence[Range],
    parts: dict[Range, list[Range]],
    events: dict[Range, int],
) -> bool:
    """Fill in the buckets' distinct counts: kept ones where they still hold, else counted (and kept, once over)."""
    wanted = [bucket for bucket in ranges if bucket in parts]
    if not wanted:
        return False
    found: dict[Range, tuple[int, int, bool]] = {}
    rows = await connection.fetch(queries.REPORTS["kept_distincts"], site_id, *_columns(wanted))
    for row in rows:
        if row["events"] == events[row["starts"], row["ends"]]:
            exact = row["visitors_exact"] and row["users_exact"]
            found[row["starts"], row["ends"]] = (row["visitors"], row["users"], exact)
    missing = [bucket for bucket in wanted if bucket not in found]
    if missing:
        for bucket, counted in (await _count_and_keep(connection, site_id, missing, parts, events)).items():
            exact = counted.visitors.exact and counted.users.exact
            found[bucket] = (counted.visitors.count, counted.users.count, exact)
    approximate = False
    for number, bucket in enumerate(ranges, start=1):
        if bucket in found:
            tallies[number].visitors, tallies[number].users, exact = found[bucket]
            approximate = approximate or not exact
    return approximate


async def _count_and_keep(
    connection: Connection,
    site_id: str,
    missing: Sequence[Range],
    parts: dict[Range, list[Range]],
    events: dict[Range, int],
) -> dict[Range, Counted]:
    """Count the buckets from their parts' sets (kept or counted from the cells), in a transaction that keeps what it
    counted of ranges already over, unless an erasure of the site is under way (`may_keep_distincts`)."""
    now = datetime.now(UTC)
    async with connection.transaction():
        may_keep: bool = await connection.fetchval(queries.REPORTS["may_keep_distincts"], site_id)
        days = sorted({day for bucket in missing for day in parts[bucket]})
        counted: dict[Range, Counted] = {}
        for row in await connection.fetch(queries.REPORTS["kept_distinct_sets"], site_id, *_columns(days)):
            day = row["starts"], row["ends"]
            if row["events"] == events[day]:
                counted[day] = Counted(
                    row["events"],
                    DistinctSet.decode(row["visitors"], row["visitors_exact"], row["visitor_set"]),
                    DistinctSet.decode(row["users"], row["users_exact"], row["user_set"]),
                )
        fresh = await _count_from_cells(connection, site_id, [day for day in days if day not in counted])
        counted.update(fresh)
        answers: dict[Range, Counted] = {}
        for bucket in missing:
            if parts[bucket] == [bucket]:
                answers[bucket] = counted.get(bucket, NOTHING)
                continue
            pieces = [counted[day] for day in parts[bucket] if day in counted]
            answers[bucket] = fresh[bucket] = Counted(
                sum(piece.events for piece in pieces),
                sketch.union([piece.visitors for piece in pieces]),
                sketch.union([piece.users for piece in pieces]),
            )
        keep = {bucket: sets for bucket, sets in fresh.items() if bucket[1] <= now and sets.events}
        if may_keep and keep:
            await _keep(connection, site_id, keep)
    return answers


async def _count_from_cells(connection: Connection, site_id: str, ranges: Sequence[Range]) -> dict[Range, Counted]:
    if not ranges:
        return {}
    counted: dict[Range, Counted] = {}
    for row in await connection.fetch(queries.REPORTS["cell_hashes"], site_id, *_columns(ranges)):
        counted[ranges[row["number"] - 1]] = Counted(
            row["events"],
            DistinctSet.of(sketch.array_elements(row["visitor_hashes"])),
            DistinctSet.of(sketch.array_elements(row["user_hashes"])),
        )
    return counted


async def _keep(connection: Connection, site_id: str, keep: dict[Range, Counted]) -> None:
    ranges = sorted(keep)
    sets = [keep[bucket] for bucket in ranges]
    await connection.execute(
        queries.REPORTS["keep_distincts"],
        site_id,
        *_columns(ranges),
        [counted.events for counted in sets],
        [counted.visitors.count for counted in sets],
        [counted.users.count for counted in sets],
        [counted.visitors.exact for counted in sets],
        [counted.users.exact for counted in sets],
        [counted.visitors.encode() for counted in sets],
        [counted.users.encode() for counted in sets],
    )


def _columns(ranges: Sequence[Range]) -> tuple[list[datetime], list[datetime]]:
    return [start for start, _ in ranges], [end for _, end in ranges]


def _sums(row: asyncpg.Record) -> Tally:
    return Tally(
        pageviews=row["pageviews"],
        events=row["events"],
        visits=row["visits"],
        bounces=row["bounces"],
        duration_us=row["duration_us"],
        visit_pageviews=row["visit_pageviews"],
    )


async def keep_day(connection: Connection, day: Range, sites: Sequence[str]) -> int | None:
    """Count and keep the distinct sets of `day` for `sites`, in one transaction; how many were kept, or None when
    another keeper is at work. A site an erasure is under way for is left to the next pass."""
    async with keeping(connection, sites) as allowed:
        if allowed is None:
            return None
        rows = await connection.fetch(queries.KEEPER["day_hashes"], allowed, *day)
        for row in rows:
            counted = Counted(
                row["events"],
                DistinctSet.of(sketch.array_elements(row["visitor_hashes"])),
                DistinctSet.of(sketch.array_elements(row["user_hashes"])),
            )
            await _keep(connection, row["site_id"], {day: counted})
    return len(rows)
