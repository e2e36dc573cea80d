"""Reporting API v2 answers, computed exactly from the stored events and the visits the writer keeps.

A report is at most two grouped queries over one range: event metrics (events by their own time) and visit metrics
(visits by the time they start), each by bucket and, for a breakdown, by value. Their SQL is assembled from the
templates of `store/sql/reports.sql` and the fixed dimension expressions below; request text only ever reaches the
database as a parameter. A breakdown row for value x is what the aggregate would be with the filter
`property==x` added: an event filter keeps the matching events, and the visits with a matching event. By props keys,
the row for key k is the aggregate with `props.k!=(none)` added.

An unfiltered breakdown by a dimension of events or visits, in event metrics, reads the values the distinct keeper
keeps per past UTC day where it can (analytics/stats/values.py).

An unfiltered aggregate or time series whose bounds all fall on 15-minute UTC cells (every zone's, for any date its
offset is a multiple of 15 minutes) reads the report cells instead (analytics/stats/cells.py): a row per cell of the
period, whatever the number of events, and distinct counts kept per range, estimated past 10,000 only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from analytics.stats.cells import cell_report, on_cell_grid
from analytics.stats.params import (
    EVENT_DIMENSIONS,
    NONE_VALUE,
    PROP_KEYS,
    PROPS_PREFIX,
    VISIT_DIMENSIONS,
    Filter,
    ReportQuery,
)
from analytics.stats.periods import Bucket, DateRange, buckets, resolve
from analytics.stats.tally import Number, Tally, half_up
from analytics.stats.values import kept_breakdown, servable
from analytics.store import queries
from analytics.store.failures import translated

EVENT_METRICS: Final = frozenset({"pageviews", "events", "visitors", "users"})
VISIT_METRICS: Final = frozenset({"visits", "bounce_rate", "visit_duration", "views_per_visit"})
LIVE_WINDOW: Final = timedelta(minutes=5)
# Events stamped a little ahead of the server's clock (a client's clock running fast) still count as live.
LIVE_AHEAD: Final = timedelta(minutes=5)

_EVENT_COLUMNS: Final = {name: f"e.{name}" for name in EVENT_DIMENSIONS}
_VISIT_COLUMNS: Final = {name: f"v.{name}" for name in VISIT_DIMENSIONS}
_NO_VALUE: Final = "NULL::text"
_OPERATORS: Final = {"==": "is_one_of", "!=": "is_none_of", "~": "contains"}

Value = str | None
Connection = asyncpg.Connection | PoolConnectionProxy


def change(current: Number, previous: Number, metric: str) -> Number | None:
    """Percent change to one decimal (None when there was nothing before); bounce rate changes in points."""
    if metric == "bounce_rate":
        return current - previous
    if previous == 0:
        return None
    percent = (Fraction(current) - Fraction(previous)) * 1000 / Fraction(previous)
    return half_up(percent) / 10


@dataclass(frozen=True, slots=True)
class Cells:
    """Tallies by (value, bucket index from 1)."""

    tallies: dict[tuple[Value, int], Tally] = field(default_factory=dict)

    def at(self, value: Value, bucket: int) -> Tally:
        return self.tallies.get((value, bucket)) or Tally()

    def values(self) -> set[Value]:
        return {value for value, _ in self.tallies}


class Statement:
    """One query's parameters, in order; fragments refer to them by number."""

    def __init__(self, site_id: str, span: DateRange, starts: Sequence[datetime]) -> None:
        self.args: list[object] = [site_id, span.start, span.end, list(starts)]

    def parameter(self, value: object) -> int:
        self.args.append(value)
        return len(self.args)


def _fragment(name: str) -> str:
    return queries.fragment(queries.REPORTS[name])


def is_event_dimension(dimension: str) -> bool:
    return dimension in _EVENT_COLUMNS or dimension == PROP_KEYS or dimension.startswith(PROPS_PREFIX)


def _expression(dimension: str, statement: Statement) -> str:
    if dimension == PROP_KEYS:
        return _fragment("property_keys")
    if dimension.startswith(PROPS_PREFIX):
        return _fragment("property").format(key=statement.parameter(dimension[len(PROPS_PREFIX) :]))
    return _EVENT_COLUMNS.get(dimension) or _VISIT_COLUMNS[dimension]


def _condition(rule: Filter, statement: Statement) -> str:
    expression = _expression(rule.dimension, statement)
    if rule.operator == "~":
        return _fragment("contains").format(expression=expression, values=statement.parameter(rule.values[0]))
    values = statement.parameter(list(rule.values))
    if rule.operator == "==" and NONE_VALUE not in rule.values:
        return _fragment("is_present_one_of").format(expression=expression, values=values)
    none = statement.parameter(NONE_VALUE in rule.values)
    return _fragment(_OPERATORS[rule.operator]).format(expression=expression, values=values, none=none)


def _conditions(rules: Iterable[Filter], statement: Statement) -> str:
    return "".join(f"\n  AND {_condition(rule, statement)}" for rule in rules)


def event_metrics_sql(query: ReportQuery, statement: Statement) -> str:
    by_visit = query.property is not None and not is_event_dimension(query.property)
    needs_visit = by_visit or any(not is_event_dimension(rule.dimension) for rule in query.filters)
    value = _expression(query.property, statement) if query.property else _NO_VALUE
    return queries.REPORTS["event_metrics"].format(
        value=value,
        join=_fragment("visit_of_event") if needs_visit else "",
        conditions=_conditions(query.filters, statement),
    )


def visit_metrics_sql(query: ReportQuery, statement: Statement) -> str:
    event_rules = [rule for rule in query.filters if is_event_dimension(rule.dimension)]
    visit_rules = [rule for rule in query.filters if not is_event_dimension(rule.dimension)]
    by_event = query.property is not None and is_event_dimension(query.property)
    join = ""
    if event_rules or by_event:
        inner = _expression(query.property, statement) if by_event and query.property else _NO_VALUE
        join = _fragment("events_of_visit").format(value=inner, conditions=_conditions(event_rules, statement))
    value = _NO_VALUE
    if by_event:
        value = "matched.value"
    elif query.property:
        value = _expression(query.property, statement)
    return queries.REPORTS["visit_metrics"].format(
        value=value, join=join, conditions=_conditions(visit_rules, statement)
    )


async def _cells(connection: Connection, query: ReportQuery, span: DateRange, starts: Sequence[datetime]) -> Cells:
    """Every tally the query's metrics need, over `span` cut at `starts`."""
    cells = Cells()
    wanted = set(query.metrics)
    if wanted & EVENT_METRICS:
        statement = Statement(query.site_id, span, starts)
        for row in await connection.fetch(event_metrics_sql(query, statement), *statement.args):
            cells.tallies[row["value"], row["bucket"]] = _tally(row, events=True)
    if wanted & VISIT_METRICS:
        statement = Statement(query.site_id, span, starts)
        for row in await connection.fetch(visit_metrics_sql(query, statement), *statement.args):
            tally = cells.tallies.setdefault((row["value"], row["bucket"]), Tally())
            visits = _tally(row, events=False)
            tally.visits, tally.bounces = visits.visits, visits.bounces
            tally.duration_us, tally.visit_pageviews = visits.duration_us, visits.visit_pageviews
    return cells


async def _tallies(
    connection: Connection, query: ReportQuery, span: DateRange, starts: Sequence[datetime], by_cells: bool
) -> tuple[Cells, bool]:
    """Every tally the query needs, and whether a distinct count is an estimate (only the cells' can be)."""
    if not by_cells:
        return await _cells(connection, query, span, starts), False
    distinct = not {"visitors", "users"}.isdisjoint(query.metrics)
    hourly = query.interval == "hour"
    report = await cell_report(connection, query.site_id, span, starts, hourly=hourly, distinct=distinct)
    return Cells({(None, number): tally for number, tally in report.tallies.items()}), report.approximate


async def report_span(connection: Connection, query: ReportQuery) -> DateRange:
    """The local days the query covers; `all` starts on the day of the site's first event (unfiltered: its first
    cell, which retention keeps)."""
    first_seen = None
    if query.period == "all":
        first_query = "first_event" if query.filters else "first_cell"
        first = await connection.fetchval(queries.REPORTS[first_query], query.site_id)
        first_seen = first.astimezone(query.zone).date() if first is not None else None
    return resolve(query.period, query.anchor, query.zone, custom=query.custom, first_seen=first_seen)


@dataclass(frozen=True, slots=True)
class Coverage:
    """Since when raw events are kept (None: retention never dropped any), and whether the report reaches before
    that, so counts only what is kept (`period=all` always does once anything was dropped)."""

    raw_events_since: datetime | None = None
    incomplete: bool = False


async def coverage(connection: Connection, query: ReportQuery, earliest: datetime, by_cells: bool) -> Coverage:
    """From raw events, a report is complete from retention's `since`; from the report cells, which retention keeps,
    from `cells_since` (set only when retention had dropped events before the cells existed)."""
    row = await connection.fetchrow(queries.REPORTS["completeness"])
    assert row is not None, "events_retention has its one row"
    complete_from: datetime | None = row["cells_since"] if by_cells else row["since"]
    return Coverage(row["since"], complete_from is not None and (query.period == "all" or earliest < complete_from))


@dataclass(frozen=True, slots=True)
class AggregateAnswer:
    span: DateRange
    results: dict[str, dict[str, Number | None]]
    coverage: Coverage
    approximate: bool = False


@dataclass(frozen=True, slots=True)
class TimeseriesAnswer:
    span: DateRange
    interval: str
    results: list[dict[str, str | Number]]
    coverage: Coverage
    approximate: bool = False


@dataclass(frozen=True, slots=True)
class BreakdownAnswer:
    span: DateRange
    results: list[dict[str, Value | Number]]
    total_rows: int
    coverage: Coverage


async def aggregate(pool: asyncpg.Pool, query: ReportQuery) -> AggregateAnswer:
    with translated():
        async with pool.acquire() as connection:
            span = await report_span(connection, query)
            earliest = span.previous().start if query.compare else span.start
            by_cells = not query.filters and on_cell_grid([earliest, span.start, span.end])
            cells, approximate = await _tallies(connection, query, span, [span.start], by_cells)
            tally = cells.at(None, 1)
            results: dict[str, dict[str, Number | None]] = {m: {"value": tally.metric(m)} for m in query.metrics}
            covered = await coverage(connection, query, earliest, by_cells)
            if query.compare:
                before = span.previous()
                earlier_cells, earlier_approximate = await _tallies(connection, query, before, [before.start], by_cells)
                earlier = earlier_cells.at(None, 1)
                approximate = approximate or earlier_approximate
                for metric, result in results.items():
                    previous = earlier.metric(metric)
                    value = result["value"]
                    assert value is not None
                    result.update(previous=previous, change=change(value, previous, metric))
    return AggregateAnswer(span, results, covered, approximate)


async def timeseries(pool: asyncpg.Pool, query: ReportQuery) -> TimeseriesAnswer:
    assert query.interval is not None
    with translated():
        async with pool.acquire() as connection:
            span = await report_span(connection, query)
            series: list[Bucket] = buckets(span, query.interval)
            starts = [bucket.start for bucket in series]
            by_cells = not query.filters and on_cell_grid([span.start, span.end, *starts])
            cells, approximate = await _tallies(connection, query, span, starts, by_cells)
            covered = await coverage(connection, query, span.start, by_cells)
    results: list[dict[str, str | Number]] = []
    for index, bucket in enumerate(series, start=1):
        tally = cells.at(None, index)
        results.append({"date": bucket.label, **{metric: tally.metric(metric) for metric in query.metrics}})
    return TimeseriesAnswer(span, query.interval, results, covered, approximate)


async def breakdown(pool: asyncpg.Pool, query: ReportQuery) -> BreakdownAnswer:
    assert query.property is not None
    wanted = set(query.metrics)
    with translated():
        async with pool.acquire() as connection:
            span = await report_span(connection, query)
            kept = await kept_breakdown(connection, query, span) if servable(query) else None
            if kept is not None:
                rows, total = kept
            elif wanted <= EVENT_METRICS or wanted <= VISIT_METRICS:
                rows, total = await _top_values(connection, query, span)
            else:
                cells = await _cells(connection, query, span, [span.start])
                rows = [(value, cells.at(value, 1)) for value in cells.values()]
                first = query.metrics[0]
                rows.sort(key=lambda row: (-row[1].metric(first), row[0] is None, row[0] or ""))
                total = len(rows)
                rows = rows[(query.page - 1) * query.limit : query.page * query.limit]
            covered = await coverage(connection, query, span.start, by_cells=False)
    results: list[dict[str, Value | Number]] = [
        {query.property: value, **{metric: tally.metric(metric) for metric in query.metrics}} for value, tally in rows
    ]
    return BreakdownAnswer(span, results, total, covered)


async def _top_values(
    connection: Connection, query: ReportQuery, span: DateRange
) -> tuple[list[tuple[Value, Tally]], int]:
    """One page of a breakdown whose metrics are all of one kind: ordered and paged by PostgreSQL, so only that
    page leaves the database."""
    first = query.metrics[0]
    events = first in EVENT_METRICS
    grouping = event_metrics_sql if events else visit_metrics_sql
    statement = Statement(query.site_id, span, [span.start])
    grouped = grouping(query, statement)
    rank = queries.REPORTS[f"rank_by_{first}"].strip() if f"rank_by_{first}" in queries.REPORTS else first
    sql = queries.REPORTS["top_values"].format(
        grouped=grouped,
        rank=rank,
        limit=statement.parameter(query.limit),
        offset=statement.parameter((query.page - 1) * query.limit),
    )
    rows = await connection.fetch(sql, *statement.args)
    if rows or query.page == 1:
        return [(row["value"], _tally(row, events)) for row in rows], rows[0]["total_rows"] if rows else 0
    counting = Statement(query.site_id, span, [span.start])
    total: int = await connection.fetchval(
        queries.REPORTS["count_values"].format(grouped=grouping(query, counting)), *counting.args
    )
    return [], total


def _tally(row: asyncpg.Record, events: bool) -> Tally:
    if events:
        return Tally(pageviews=row["pageviews"], events=row["events"], visitors=row["visitors"], users=row["users"])
    return Tally(
        visits=row["visits"],
        bounces=row["bounces"],
        duration_us=row["duration_us"],
        visit_pageviews=row["visit_pageviews"],
    )


async def live_visitors(pool: asyncpg.Pool, site_id: str) -> int:
    now = datetime.now(UTC)
    with translated():
        async with pool.acquire() as connection:
            count: int = await connection.fetchval(
                queries.REPORTS["live_visitors"], site_id, now - LIVE_WINDOW, now + LIVE_AHEAD
            )
    return count
