"""The reporting API v2 query string: defaults, and every bad input's message at its `query.<param>`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from analytics.events.contract import FieldError, InvalidInput
from analytics.stats.params import DEFAULT_METRICS, METRICS, Filter, ReportQuery, parse_report_query

NOW = datetime(2025, 11, 12, 23, 30, tzinfo=UTC)  # already the 13th in Berlin, still the 12th in New York


def parse(kind: str = "aggregate", **params: str) -> ReportQuery:
    return parse_report_query(kind, {"site_id": "s", **params}, clock=lambda: NOW)


def errors(kind: str = "aggregate", **params: str) -> list[FieldError]:
    with pytest.raises(InvalidInput) as caught:
        parse_report_query(kind, {"site_id": "s", **params}, clock=lambda: NOW)
    return caught.value.errors


def test_defaults() -> None:
    query = parse()
    assert (query.period, query.anchor, query.zone, query.metrics) == (
        "30d",
        date(2025, 11, 12),
        ZoneInfo("UTC"),
        DEFAULT_METRICS,
    )
    assert (query.filters, query.compare, query.limit, query.page) == ((), False, 10, 1)


def test_today_is_the_zones_today() -> None:
    assert parse(timezone="Europe/Berlin").anchor == date(2025, 11, 13)
    assert parse(timezone="America/New_York").anchor == date(2025, 11, 12)


def test_every_parameter() -> None:
    query = parse(
        "breakdown",
        period="custom",
        **{"from": "2025-01-01", "to": "2025-01-31"},
        timezone="Asia/Kathmandu",
        metrics="visitors,bounce_rate,visitors",
        filters="country==DE|FR;path~/blog;props.plan!=pro;source==(none)",
        property="props.plan",
        limit="1000",
        page="3",
    )
    assert query.custom == (date(2025, 1, 1), date(2025, 1, 31))
    assert query.zone == ZoneInfo("Asia/Kathmandu")
    assert query.metrics == ("visitors", "bounce_rate")
    assert query.filters == (
        Filter("country", "==", ("DE", "FR")),
        Filter("path", "~", ("/blog",)),
        Filter("props.plan", "!=", ("pro",)),
        Filter("source", "==", ("(none)",)),
    )
    assert (query.property, query.limit, query.page) == ("props.plan", 1000, 3)


def test_the_interval_defaults_from_the_period() -> None:
    assert parse("timeseries", period="day").interval == "hour"
    assert parse("timeseries", period="30d").interval == "day"
    assert parse("timeseries", period="12mo").interval == "month"
    assert parse("timeseries", period="month", interval="week").interval == "week"


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("aggregate", {"site_id": ""}, [FieldError("query.site_id", "site_id is required")]),
        (
            "aggregate",
            {"metrics": "pageviews,sessions,bounces"},
            [FieldError("query.metrics", f"unknown metric(s): sessions, bounces; metrics are {', '.join(METRICS)}")],
        ),
        (
            "aggregate",
            {"metrics": ","},
            [FieldError("query.metrics", f"metrics must name at least one of {', '.join(METRICS)}")],
        ),
        (
            "aggregate",
            {"timezone": "Mars/Olympus"},
            [
                FieldError(
                    "query.timezone",
                    "timezone must be an IANA time zone name such as Europe/Berlin, got 'Mars/Olympus'",
                )
            ],
        ),
        (
            "aggregate",
            {"timezone": "../../etc/passwd"},
            [
                FieldError(
                    "query.timezone",
                    "timezone must be an IANA time zone name such as Europe/Berlin, got '../../etc/passwd'",
                )
            ],
        ),
        (
            "aggregate",
            {"period": "week"},
            [FieldError("query.period", "period must be one of day, 7d, 30d, month, 6mo, 12mo, year, all, custom")],
        ),
        (
            "aggregate",
            {"date": "2025-02-30"},
            [FieldError("query.date", "date must be a real calendar date in YYYY-MM-DD format")],
        ),
        (
            "aggregate",
            {"period": "custom", "from": "2025-02-01", "to": "2025-01-01"},
            [FieldError("query.from", "from (2025-02-01) must not be after to (2025-01-01)")],
        ),
        (
            "aggregate",
            {"period": "custom", "from": "2015-01-01", "to": "2025-01-01"},
            [FieldError("query.to", "a custom range covers at most 10 years (3653 days)")],
        ),
        (
            "aggregate",
            {"period": "custom"},
            [
                FieldError("query.from", "from is required with period=custom"),
                FieldError("query.to", "to is required with period=custom"),
            ],
        ),
        ("aggregate", {"from": "2025-01-01"}, [FieldError("query.from", "from is used only with period=custom")]),
        ("aggregate", {"compare": "last_year"}, [FieldError("query.compare", "compare must be previous_period")]),
        (
            "breakdown",
            {"property": "path", "limit": "0"},
            [FieldError("query.limit", "limit must be a whole number from 1 to 1000")],
        ),
        (
            "breakdown",
            {"property": "path", "limit": "1001"},
            [FieldError("query.limit", "limit must be a whole number from 1 to 1000")],
        ),
        (
            "breakdown",
            {"property": "path", "page": "0"},
            [FieldError("query.page", "page must be a whole number from 1 to 1000000")],
        ),
        ("breakdown", {}, [FieldError("query.property", "property is required: the dimension to break down by")]),
        (
            "timeseries",
            {"interval": "minute"},
            [FieldError("query.interval", "interval must be one of hour, day, week, month")],
        ),
        (
            "timeseries",
            {"interval": "hour", "period": "12mo"},
            [
                FieldError(
                    "query.interval", "interval=hour covers at most 31 days: use day, week or month for this period"
                )
            ],
        ),
        (
            "timeseries",
            {"interval": "hour", "period": "all"},
            [
                FieldError(
                    "query.interval", "interval=hour covers at most 31 days: use day, week or month for this period"
                )
            ],
        ),
    ],
)
def test_bad_input_is_named(kind: str, params: dict[str, str], expected: list[FieldError]) -> None:
    assert errors(kind, **params) == expected


def test_unknown_properties_and_filter_dimensions_are_named() -> None:
    [error] = errors("breakdown", property="city")
    assert error.path == "query.property"
    assert error.message.startswith("unknown property: city; properties are event_type, path, entry_page")
    [error] = errors(filters="city==Berlin")
    assert error.path == "query.filters"
    assert error.message.startswith("unknown filter dimension: city;")


@pytest.mark.parametrize("filters", ["path", "path=/a", "==x", "path==", "path==a||b", "props.==x", "path=>a"])
def test_malformed_filters_are_refused(filters: str) -> None:
    [error] = errors(filters=filters)
    assert error.path == "query.filters"


def test_every_problem_at_once() -> None:
    found = errors("breakdown", site_id="", timezone="Nowhere", period="custom", limit="x", filters="city==x")
    assert [error.path for error in found] == [
        "query.site_id",
        "query.timezone",
        "query.from",
        "query.to",
        "query.filters",
        "query.property",
        "query.limit",
    ]


def test_an_hourly_series_of_31_days_is_allowed() -> None:
    assert parse("timeseries", interval="hour", period="month").interval == "hour"
    assert (
        parse("timeseries", interval="hour", period="custom", **{"from": "2025-01-01", "to": "2025-01-31"}).interval
        == "hour"
    )


def test_a_backslash_escapes_the_filter_separators() -> None:
    query = parse(filters=r"path==a\;b|c\|d|e\\;props.k\;x~y\|z")
    assert query.filters == (
        Filter("path", "==", ("a;b", "c|d", "e\\")),
        Filter("props.k;x", "~", ("y|z",)),
    )


@pytest.mark.parametrize("param", ["date", "from", "to"])
@pytest.mark.parametrize("day", ["1969-12-31", "3000-01-01", "0001-01-01", "9999-12-31"])
def test_days_outside_what_can_be_stored_are_refused(param: str, day: str) -> None:
    params = {"period": "custom", "from": "2025-01-01", "to": "2025-01-02", param: day}
    if param == "date":
        params = {param: day}
    assert FieldError(f"query.{param}", f"{param} must be a day from 1970-01-01 to 2999-12-31") in errors(**params)


def test_a_property_key_with_a_nul_is_unknown() -> None:
    assert errors("breakdown", property="props.a\x00b")[0].path == "query.property"
