"""The contract's response bodies as types: what the handlers encode is what the OpenAPI document describes."""

from __future__ import annotations

from typing import Literal

import msgspec

from analytics.events.contract import FieldError
from analytics.stats.rollups import SiteStats


class Fail(msgspec.Struct, frozen=True):
    """A refusal with one message: `fail` when the client must change something, `error` when it may retry."""

    status: Literal["fail", "error"]
    message: str


class Invalid(msgspec.Struct, frozen=True, kw_only=True):
    """Every problem in the request at once, each at its path (`body.site_id`, `body.3.timestamp`, `query.date`)."""

    status: Literal["fail"] = "fail"
    errors: list[FieldError]


class Queued(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["queued"] = "queued"


class QueuedCount(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["queued"] = "queued"
    count: int


class StatsFound(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["success"] = "success"
    data: SiteStats


class ReportPeriod(msgspec.Struct, frozen=True, rename={"first": "from"}):
    """The local days a report covers, both included, and the zone they are days of."""

    first: str
    to: str
    timezone: str


class ReportMeta(msgspec.Struct, frozen=True, omit_defaults=True):
    """`approximate`: whether any distinct count is an estimate (within 2 %; only counts past 10,000 can be). Once
    retention dropped raw events: `raw_events_since`, from when they are kept, and `incomplete` when the report
    reaches before that (it counts only what is kept)."""

    approximate: bool
    raw_events_since: str | None = None
    incomplete: bool = False


class AggregateReport(msgspec.Struct, frozen=True):
    """Each metric's `value`; with compare, also `previous` and `change` (percent, bounce rate: points)."""

    site_id: str
    period: ReportPeriod
    results: dict[str, dict[str, int | float | None]]
    meta: ReportMeta


class TimeseriesReport(msgspec.Struct, frozen=True):
    """Every bucket of the period in order, zero-filled: `date` and each metric."""

    site_id: str
    period: ReportPeriod
    interval: str
    results: list[dict[str, str | int | float]]
    meta: ReportMeta


class BreakdownReport(msgspec.Struct, frozen=True):
    """One page of the property's values by the first metric, descending, then the value by code point."""

    site_id: str
    period: ReportPeriod
    property: str
    results: list[dict[str, str | int | float | None]]
    total_rows: int
    page: int
    limit: int
    meta: ReportMeta


class LiveVisitors(msgspec.Struct, frozen=True):
    visitors: int


class RealtimeReport(msgspec.Struct, frozen=True):
    site_id: str
    results: LiveVisitors


class AggregateFound(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["success"] = "success"
    data: AggregateReport


class TimeseriesFound(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["success"] = "success"
    data: TimeseriesReport


class BreakdownFound(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["success"] = "success"
    data: BreakdownReport


class RealtimeFound(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["success"] = "success"
    data: RealtimeReport


class SiteList(msgspec.Struct, frozen=True):
    """The sites the dashboard offers: ANALYTICS_SITES when set, else those with stored page views."""

    sites: list[str]


class SitesFound(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["success"] = "success"
    data: SiteList


class Healthy(msgspec.Struct, frozen=True):
    message: str


class ReadyState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`ready`, or `error` with a message naming what is down; `checks` maps each dependency to `up` or `down`."""

    status: Literal["ready", "error"]
    checks: dict[str, Literal["up", "down"]]
    message: str | None = msgspec.field(default=None)


class InternalError(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["error"] = "error"
    message: str = "Internal Server Error"
