"""Unfiltered breakdowns from kept values (migrations/0015.report_values.sql): a row per past UTC day and value
instead of every event, exact.

The distinct keeper counts each past UTC day's values per site from raw events (`keep_day_values`). A breakdown's
range is cut at UTC midnights: the whole days whose kept values still hold come from them, the rest (the parts of a
day at either end, today, a day a late event changed) from raw events, with their hashes. Page views and events add
up; a value's visitors and users over several days are the union of its days' hash sets, which only the values that
can reach the page need: a value's distinct count is at most the sum of its days' counts and at least the greatest,
so ranking by visitors or users counts exact unions until no value left out can beat the page's last. A one-day
range ranks in the database, from an index in the contract's order: however many values tie, a page reads its rows.
A range that is over keeps the counts its unions made (migrations/0019.report_value_counts.sql); the next breakdown
over it takes a value's kept count while the value sums to the events it did then.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from analytics.stats import sketch
from analytics.stats.keeping import keeping
from analytics.stats.params import EVENT_DIMENSIONS, VISIT_DIMENSIONS, ReportQuery
from analytics.stats.periods import DateRange
from analytics.stats.tally import Tally
from analytics.store import queries

ONE_DAY: Final = timedelta(days=1)
KEPT_DIMENSIONS: Final = frozenset({*EVENT_DIMENSIONS, *VISIT_DIMENSIONS})
KEPT_METRICS: Final = frozenset({"pageviews", "events", "visitors", "users"})
# Values whose exact distinct count a ranking pass fetches at once.
CANDIDATES_PER_PASS: Final = 64

Connection = asyncpg.Connection | PoolConnectionProxy
Value = str | None
Range = tuple[datetime, datetime]


def servable(query: ReportQuery) -> bool:
    """Whether kept values can answer the breakdown: no filters, a kept dimension, event metrics only."""
    return not query.filters and query.property in KEPT_DIMENSIONS and set(query.metrics) <= KEPT_METRICS


@dataclass(slots=True)
class _Value:
    """A value's sums over the range; a distinct count is known exactly once its bounds meet or its hashes are
    counted."""

    pageviews: int = 0
    events: int = 0
    visitors_at_most: int = 0
    visitors_at_least: int = 0
    users_at_most: int = 0
    users_at_least: int = 0
    raw_visitors: list[sketch.Hashes] = field(default_factory=list)
    raw_users: list[sketch.Hashes] = field(default_factory=list)

    def add_bounds(self, visitors: int, users: int) -> None:
        self.visitors_at_most += visitors
        self.visitors_at_least = max(self.visitors_at_least, visitors)
        self.users_at_most += users
        self.users_at_least = max(self.users_at_least, users)


async def kept_breakdown(
    connection: Connection, query: ReportQuery, span: DateRange
) -> tuple[list[tuple[Value, Tally]], int] | None:
    """One page of the breakdown and its number of values, or None when no day of the range is kept."""
    assert query.property is not None
    days = _whole_utc_days(span.start, span.end)
    if not days:
        return None
    rows = await connection.fetch(
        queries.REPORTS["kept_value_days"], query.site_id, days[0], days[-1] + ONE_DAY, query.property
    )
    kept = sorted(row["day"] for row in rows)
    if not kept:
        return None
    raw = _uncovered(span, kept)
    first = query.metrics[0]
    if not raw and len(kept) == 1 and first in ("pageviews", "visitors"):
        return await _one_day(connection, query, kept[0], first, rows[0]["value_count"])
    weeks = whole_weeks(kept, {_week_of(row["day"]) for row in rows if row["week_kept"]})
    ranked = _Ranking(connection, query, kept, weeks, (span.start, span.end))
    await ranked.load(raw)
    page = await ranked.page()
    if span.end <= datetime.now(UTC):
        await ranked.keep_counts()
    return page


def whole_weeks(kept: Sequence[datetime], marked: set[datetime]) -> list[datetime]:
    """The marked weeks (their Mondays) all seven of whose days are among the kept days: their sums stand for those
    days' (migrations/0017.report_value_weeks.sql)."""
    days = set(kept)
    return sorted(week for week in marked if all(week + n * ONE_DAY in days for n in range(7)))


def _week_of(day: datetime) -> datetime:
    return day - day.weekday() * ONE_DAY


async def _one_day(
    connection: Connection, query: ReportQuery, day: datetime, first: str, total: int
) -> tuple[list[tuple[Value, Tally]], int]:
    name = "top_day_values" if first == "pageviews" else "top_day_values_by_visitors"
    offset = (query.page - 1) * query.limit
    rows = await connection.fetch(queries.REPORTS[name], query.site_id, query.property, day, query.limit, offset)
    page = [
        (
            row["value"],
            Tally(pageviews=row["pageviews"], events=row["events"], visitors=row["visitors"], users=row["users"]),
        )
        for row in rows
    ]
    return page, total


@dataclass(frozen=True, slots=True)
class _KeptCount:
    """A value's distinct counts as an earlier report counted them over the same range, with the events it summed to
    then: they hold while it sums to as many (migrations/0019.report_value_counts.sql)."""

    events: int
    visitors: int | None
    users: int | None


class _Ranking:
    """A multi-day breakdown: every value's sums, and the exact distinct counts of those the page needs."""

    def __init__(
        self, connection: Connection, query: ReportQuery, kept: list[datetime], weeks: list[datetime], span: Range
    ) -> None:
        assert query.property is not None
        self._connection = connection
        self._query = query
        self._dimension = query.property
        self._kept = kept
        self._weeks = weeks
        self._span = span
        self._values: dict[Value, _Value] = {}
        self._visitors: dict[Value, int] = {}
        self._users: dict[Value, int] = {}
        self._kept_counts: dict[Value, _KeptCount] = {}
        self._counted: dict[Value, dict[str, int]] = {}

    async def load(self, raw: Sequence[Range]) -> None:
        """The kept days' sums, a kept week's from its row, then the raw parts' sums and hashes."""
        in_weeks = {week + n * ONE_DAY for week in self._weeks for n in range(7)}
        days = [day for day in self._kept if day not in in_weeks]
        args = (self._query.site_id, self._dimension, days, self._weeks)
        for row in await self._connection.fetch(queries.REPORTS["kept_value_sums"], *args):
            value = self._values[row["value"]] = _Value(row["pageviews"], row["events"])
            value.visitors_at_most, value.visitors_at_least = row["visitors_at_most"], row["visitors_at_least"]
            value.users_at_most, value.users_at_least = row["users_at_most"], row["users_at_least"]
        for start, end in raw:
            for row in await self._connection.fetch(self._raw_sql(), self._query.site_id, start, end):
                value = self._values.setdefault(row["value"], _Value())
                value.pageviews += row["pageviews"]
                value.events += row["events"]
                visitors = sketch.array_elements(row["visitor_hashes"])
                users = sketch.array_elements(row["user_hashes"])
                value.add_bounds(len(visitors), len(users))
                value.raw_visitors.append(visitors)
                value.raw_users.append(users)
        counts = await self._connection.fetch(
            queries.REPORTS["kept_value_counts"], self._query.site_id, self._dimension, *self._span
        )
        self._kept_counts = {row["value"]: _KeptCount(row["events"], row["visitors"], row["users"]) for row in counts}

    def _raw_sql(self) -> str:
        join = "" if self._dimension in EVENT_DIMENSIONS else queries.fragment(queries.REPORTS["visit_of_event"])
        column = f"e.{self._dimension}" if self._dimension in EVENT_DIMENSIONS else f"v.{self._dimension}"
        return queries.REPORTS["event_value_hashes"].format(value=column, join=join)

    async def page(self) -> tuple[list[tuple[Value, Tally]], int]:
        query = self._query
        first = query.metrics[0]
        wanted = query.page * query.limit
        if first in ("visitors", "users"):
            await self._count_until_settled(first, wanted)
            known = self._visitors if first == "visitors" else self._users
            order = sorted(known, key=lambda value: _rank_key(known[value], value))
        else:
            order = sorted(self._values, key=lambda value: _rank_key(getattr(self._values[value], first), value))
        chosen = order[(query.page - 1) * query.limit : wanted]
        if "visitors" in query.metrics:
            await self._count(chosen, "visitors")
        if "users" in query.metrics:
            await self._count(chosen, "users")
        rows = []
        for value in chosen:
            sums = self._values[value]
            tally = Tally(pageviews=sums.pageviews, events=sums.events)
            tally.visitors = self._visitors.get(value, 0)
            tally.users = self._users.get(value, 0)
            rows.append((value, tally))
        return rows, len(self._values)

    async def _count_until_settled(self, metric: str, wanted: int) -> None:
        """Exact counts for values by their upper bound, until the `wanted`-th best counted is ahead of every
        value not counted: no value left out can reach the page."""
        bound = "visitors_at_most" if metric == "visitors" else "users_at_most"
        known = self._visitors if metric == "visitors" else self._users
        await self._count(self._values, metric, only_settled=True)
        waiting = sorted(
            (value for value in self._values if value not in known),
            key=lambda value: _rank_key(getattr(self._values[value], bound), value),
        )
        while waiting:
            if len(known) >= wanted:
                best = sorted(known, key=lambda value: _rank_key(known[value], value))[wanted - 1]
                last = _rank_key(known[best], best)
                if _rank_key(getattr(self._values[waiting[0]], bound), waiting[0]) > last:
                    return
            batch, waiting = waiting[:CANDIDATES_PER_PASS], waiting[CANDIDATES_PER_PASS:]
            await self._count(batch, metric)

    async def _count(self, values: Iterable[Value], metric: str, *, only_settled: bool = False) -> None:
        """Exact distinct counts: from the bounds where they meet, else the union of the kept and raw hash sets."""
        known = self._visitors if metric == "visitors" else self._users
        unknown = []
        for value in values:
            if value in known:
                continue
            sums = self._values[value]
            at_most, at_least = (
                (sums.visitors_at_most, sums.visitors_at_least)
                if metric == "visitors"
                else (sums.users_at_most, sums.users_at_least)
            )
            kept_count = self._kept_count(value, metric)
            if at_most == at_least:
                known[value] = at_most
            elif kept_count is not None:
                known[value] = kept_count
            elif not only_settled:
                unknown.append(value)
        if not unknown:
            return
        texts = [value for value in unknown if value is not None]
        kept: dict[Value, sketch.Hashes] = {}
        args = (self._query.site_id, self._dimension, self._kept, texts, None in unknown, metric == "visitors")
        for row in await self._connection.fetch(queries.REPORTS["kept_value_hashes"], *args):
            kept[row["value"]] = sketch.packed_elements(row["hashes"])
        for value in unknown:
            sums = self._values[value]
            raw = sums.raw_visitors if metric == "visitors" else sums.raw_users
            parts = [kept[value]] if value in kept else []
            known[value] = self._counted.setdefault(value, {})[metric] = sketch.distinct_count(
                list(itertools.chain(parts, raw))
            )

    def _kept_count(self, value: Value, metric: str) -> int | None:
        """The count an earlier report kept for the value, if the value still sums to the events it did then."""
        kept = self._kept_counts.get(value)
        if kept is None or kept.events != self._values[value].events:
            return None
        return kept.visitors if metric == "visitors" else kept.users

    async def keep_counts(self) -> None:
        """Keep the counts this report made by unions, for the next report over the range; nothing while an erasure
        of the site is under way (it forgets them; cells.py keeps its ranges' sets the same way)."""
        if not self._counted:
            return
        values = sorted(self._counted, key=lambda value: (value is None, value or ""))
        counted = [self._counted[value] for value in values]
        async with self._connection.transaction():
            if not await self._connection.fetchval(queries.REPORTS["may_keep_distincts"], self._query.site_id):
                return
            await self._connection.execute(
                queries.REPORTS["keep_value_counts"],
                self._query.site_id,
                self._dimension,
                *self._span,
                values,
                [self._values[value].events for value in values],
                [counts.get("visitors") for counts in counted],
                [counts.get("users") for counts in counted],
            )


def _rank_key(count: int, value: Value) -> tuple[int, bool, str]:
    """The contract's order: the count descending, then the value by code point, a missing one last."""
    return -count, value is None, value or ""


def _whole_utc_days(start: datetime, end: datetime) -> list[datetime]:
    """The starts of the UTC days wholly inside [start, end)."""
    first = datetime.combine(start.astimezone(UTC).date(), time(), UTC)
    if first < start:
        first += ONE_DAY
    days = []
    while first + ONE_DAY <= end:
        days.append(first)
        first += ONE_DAY
    return days


def _uncovered(span: DateRange, kept: Sequence[datetime]) -> list[Range]:
    """The parts of the span outside the kept days, joined where they touch."""
    parts: list[Range] = []
    cursor = span.start
    for day in kept:
        if cursor < day:
            parts.append((cursor, day))
        cursor = day + ONE_DAY
    if cursor < span.end:
        parts.append((cursor, span.end))
    return parts


async def keep_day_values(connection: Connection, day: Range, sites: Sequence[str]) -> int | None:
    """Count and keep `day`'s values for `sites`, in one transaction; how many sites, or None when another keeper is
    at work. A site an erasure is under way for is left to the next pass."""
    async with keeping(connection, sites) as allowed:
        if allowed:
            await connection.execute(queries.KEEPER["forget_day_values"], allowed, day[0])
            await connection.execute(queries.KEEPER["keep_day_values"], allowed, *day)
    return None if allowed is None else len(allowed)


async def keep_week_values(connection: Connection, week: datetime, sites: Sequence[str]) -> int | None:
    """Sum and keep the values of the ISO week starting on `week` for `sites`, whose seven days are kept, in one
    transaction; how many sites, or None when another keeper is at work. A site an erasure is under way for is left
    to the next pass."""
    async with keeping(connection, sites) as allowed:
        if allowed:
            await connection.execute(queries.KEEPER["keep_week_values"], allowed, week)
    return None if allowed is None else len(allowed)
