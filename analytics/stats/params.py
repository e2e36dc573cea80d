"""The reporting API v2 query string (docs: README "Reporting API v2"), validated into a `ReportQuery`: every problem
reported at once, at `query.<param>`, in the contract's shape; unknown metrics and dimensions listed by name."""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from analytics.events.contract import PROP_KEY_MAX, SITE_ID_MAX, FieldError, InvalidInput
from analytics.stats.periods import (
    DEFAULT_INTERVAL,
    INTERVALS,
    MAX_CUSTOM_DAYS,
    MAX_HOURLY_DAYS,
    PERIODS,
    resolve,
)
from analytics.stats.query import DATE_MESSAGE

METRICS: Final = (
    "pageviews",
    "visitors",
    "users",
    "visits",
    "bounce_rate",
    "visit_duration",
    "views_per_visit",
    "events",
)
DEFAULT_METRICS: Final = ("pageviews", "visitors")
EVENT_DIMENSIONS: Final = ("event_type", "path")
VISIT_DIMENSIONS: Final = (
    "entry_page",
    "exit_page",
    "source",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "country",
    "device",
    "browser",
    "browser_version",
    "os",
    "os_version",
)
DIMENSIONS: Final = (*EVENT_DIMENSIONS, *VISIT_DIMENSIONS)
PROPS_PREFIX: Final = "props."
# Breakdowns only: by the props keys events carry (a row per key: the events with a value for it).
PROP_KEYS: Final = "props"
OPERATORS: Final = ("==", "!=", "~")
NONE_VALUE: Final = "(none)"  # a filter value that matches an event without the dimension
MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 10
KINDS: Final = ("aggregate", "timeseries", "breakdown", "realtime")
# Events are stored from 1970 on; the bounds keep every period and its previous one within datetime's years.
FIRST_DAY: Final = date(1970, 1, 1)
LAST_DAY: Final = date(2999, 12, 31)
DAYS_MESSAGE: Final = f"{{param}} must be a day from {FIRST_DAY} to {LAST_DAY}"

_DATE_SHAPE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_FILTER: Final = re.compile(r"(?P<dimension>[^=!~]+)(?P<operator>==|!=|~)(?P<values>.*)", re.DOTALL)
FILTER_SHAPE: Final = (
    "a filter is dimension==a|b, dimension!=a|b or dimension~substring, separated by ; (a backslash escapes ; | \\)"
)
_ESCAPED: Final = re.compile(r"\\(.)", re.DOTALL)


@functools.cache
def time_zones() -> frozenset[str]:
    """IANA names only: ZoneInfo would also read other files under the zone directory."""
    return frozenset(zoneinfo.available_timezones())


@dataclass(frozen=True, slots=True)
class Filter:
    """`dimension` is one of DIMENSIONS or `props.<key>`; `values` match exactly (`==`, `!=`, any of them; the
    value `(none)` matches a missing one) or as a substring (`~`, one value)."""

    dimension: str
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """A valid request. `first`/`last`/`zone` are the local days of the period (for `all`, `first` is the anchor:
    the planner moves it back to the site's first event)."""

    site_id: str
    period: str
    anchor: date
    custom: tuple[date, date] | None
    zone: ZoneInfo
    metrics: tuple[str, ...]
    filters: tuple[Filter, ...]
    interval: str | None
    property: str | None
    limit: int
    page: int
    compare: bool


def parse_report_query(
    kind: str, params: Mapping[str, str], clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> ReportQuery:
    """Validate the query string of one of the four endpoints; raise `InvalidInput` listing every problem."""
    problems: list[FieldError] = []

    def problem(param: str, message: str) -> None:
        problems.append(FieldError(f"query.{param}", message))

    site_id = params.get("site_id") or ""
    if not site_id:
        problem("site_id", "site_id is required")
    elif len(site_id) > SITE_ID_MAX:
        problem("site_id", f"site_id must be at most {SITE_ID_MAX} characters")
    elif "\x00" in site_id:
        problem("site_id", "site_id must not contain NUL characters")

    zone = ZoneInfo("UTC")
    zone_name = params.get("timezone", "UTC")
    if zone_name in time_zones():
        zone = ZoneInfo(zone_name)
    else:
        problem("timezone", f"timezone must be an IANA time zone name such as Europe/Berlin, got {zone_name!r}")

    period = params.get("period", "30d")
    if period not in PERIODS:
        problem("period", f"period must be one of {', '.join(PERIODS)}")
    anchor = clock().astimezone(zone).date()
    if "date" in params:
        parsed = _date(params["date"])
        if parsed is None:
            problem("date", DATE_MESSAGE)
        elif not FIRST_DAY <= parsed <= LAST_DAY:
            problem("date", DAYS_MESSAGE.format(param="date"))
        else:
            anchor = parsed
    custom = _custom_range(period, params, problem)

    metrics: tuple[str, ...] = DEFAULT_METRICS
    if kind in ("aggregate", "timeseries", "breakdown") and "metrics" in params:
        metrics = tuple(dict.fromkeys(name.strip() for name in params["metrics"].split(",") if name.strip()))
        unknown = [name for name in metrics if name not in METRICS]
        if unknown:
            problem("metrics", f"unknown metric(s): {', '.join(unknown)}; metrics are {', '.join(METRICS)}")
        elif not metrics:
            problem("metrics", f"metrics must name at least one of {', '.join(METRICS)}")
    filters = _filters(params.get("filters", ""), problem) if kind != "realtime" else ()

    interval: str | None = None
    if kind == "timeseries":
        interval = params.get("interval", DEFAULT_INTERVAL.get(period, "day"))
        if interval not in INTERVALS:
            problem("interval", f"interval must be one of {', '.join(INTERVALS)}")
        elif interval == "hour" and period in PERIODS and not _hourly_allowed(period, anchor, zone, custom):
            problem(
                "interval",
                f"interval=hour covers at most {MAX_HOURLY_DAYS} days: use day, week or month for this period",
            )

    prop: str | None = None
    limit, page = DEFAULT_LIMIT, 1
    if kind == "breakdown":
        prop = params.get("property")
        if not prop:
            problem("property", "property is required: the dimension to break down by")
        elif prop != PROP_KEYS and not _known_dimension(prop):
            known = ", ".join(DIMENSIONS)
            problem("property", f"unknown property: {prop}; properties are {known}, {PROP_KEYS}, props.<key>")
        limit = _whole(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT, problem)
        page = _whole(params, "page", 1, 1, 1_000_000, problem)

    compare = False
    if kind == "aggregate" and "compare" in params:
        compare = params["compare"] == "previous_period"
        if not compare:
            problem("compare", "compare must be previous_period")

    if problems:
        raise InvalidInput(problems)
    return ReportQuery(site_id, period, anchor, custom, zone, metrics, filters, interval, prop, limit, page, compare)


def _date(text: str) -> date | None:
    if not _DATE_SHAPE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _custom_range(
    period: str, params: Mapping[str, str], problem: Callable[[str, str], None]
) -> tuple[date, date] | None:
    if period != "custom":
        for param in ("from", "to"):
            if param in params:
                problem(param, f"{param} is used only with period=custom")
        return None
    bounds: list[date] = []
    for param in ("from", "to"):
        if param not in params:
            problem(param, f"{param} is required with period=custom")
            continue
        parsed = _date(params[param])
        if parsed is None:
            problem(param, f"{param} must be a real calendar date in YYYY-MM-DD format")
        elif not FIRST_DAY <= parsed <= LAST_DAY:
            problem(param, DAYS_MESSAGE.format(param=param))
        else:
            bounds.append(parsed)
    if len(bounds) != 2:
        return None
    first, last = bounds
    if first > last:
        problem("from", f"from ({first}) must not be after to ({last})")
    elif (last - first).days + 1 > MAX_CUSTOM_DAYS:
        problem("to", f"a custom range covers at most 10 years ({MAX_CUSTOM_DAYS} days)")
    return first, last


def _hourly_allowed(period: str, anchor: date, zone: ZoneInfo, custom: tuple[date, date] | None) -> bool:
    if period == "all" or (period == "custom" and custom is None):
        return False
    return resolve(period, anchor, zone, custom=custom).days <= MAX_HOURLY_DAYS


def _known_dimension(name: str) -> bool:
    if name.startswith(PROPS_PREFIX):
        return 0 < len(name) - len(PROPS_PREFIX) <= PROP_KEY_MAX and "\x00" not in name
    return name in DIMENSIONS


def _split(text: str, separator: str) -> list[str]:
    """`text` cut at each `separator` not escaped by a backslash; escapes are kept for `_unescape`."""
    parts, current, escaped = [], [], False
    for character in text:
        if escaped:
            current.append(character)
            escaped = False
        elif character == "\\":
            current.append(character)
            escaped = True
        elif character == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(character)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return _ESCAPED.sub(r"\1", text)


def _filters(text: str, problem: Callable[[str, str], None]) -> tuple[Filter, ...]:
    found: list[Filter] = []
    for clause in (part for part in _split(text, ";") if part.strip()):
        match = _FILTER.fullmatch(clause.strip())
        if match is None:
            problem("filters", f"{clause.strip()!r}: {FILTER_SHAPE}")
            continue
        dimension, operator = _unescape(match["dimension"].strip()), match["operator"]
        pieces = [match["values"]] if operator == "~" else _split(match["values"], "|")
        values = tuple(_unescape(piece) for piece in pieces)
        if not _known_dimension(dimension):
            problem(
                "filters", f"unknown filter dimension: {dimension}; dimensions are {', '.join(DIMENSIONS)}, props.<key>"
            )
        elif any(not value or "\x00" in value for value in values):
            problem("filters", f"{clause.strip()!r}: every value must be non-empty text ({NONE_VALUE} for none)")
        else:
            found.append(Filter(dimension, operator, values))
    return tuple(found)


def _whole(
    params: Mapping[str, str], name: str, default: int, low: int, high: int, problem: Callable[[str, str], None]
) -> int:
    text = params.get(name)
    if text is None:
        return default
    if text.isascii() and text.isdigit() and low <= int(text) <= high:
        return int(text)
    problem(name, f"{name} must be a whole number from {low} to {high}")
    return default
