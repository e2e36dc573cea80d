"""The OpenAPI 3.1 document, generated from the msgspec types the handlers decode and encode."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from analytics.events.contract import NO_NUL, SITE_ID_MAX, EventIn
from analytics.events.plausible import PlausibleEvent
from analytics.stats.params import (
    DIMENSIONS,
    FIRST_DAY,
    LAST_DAY,
    MAX_LIMIT,
    METRICS,
    OPERATORS,
)
from analytics.stats.periods import INTERVALS, PERIODS
from analytics.web.responses import (
    AggregateFound,
    BreakdownFound,
    Fail,
    Healthy,
    Invalid,
    Queued,
    QueuedCount,
    ReadyState,
    RealtimeFound,
    SitesFound,
    StatsFound,
    TimeseriesFound,
)

REF_TEMPLATE: Final = "#/components/schemas/{name}"

REFUSALS: Final = {
    "403": "Origin not allowed, or site_id not in ANALYTICS_SITES: nothing queued",
    "413": "Body (after gzip) larger than ANALYTICS_MAX_BODY_BYTES",
    "415": "Content-Type other than JSON or text/plain, or Content-Encoding other than gzip",
    "429": "Rate limit of the client or the site exceeded; see Retry-After",
    "431": "Request line and headers larger than ANALYTICS_MAX_HEADER_BYTES: the connection closes",
    "503": "Queue unavailable or full: not queued; retry after Retry-After",
}

INGEST_BODY: Final = (
    "JSON, sent as application/json or as text/plain (what navigator.sendBeacon sends); "
    "Content-Encoding: gzip is accepted. Unknown fields are ignored. Events from bots (an empty User-Agent, a known "
    "crawler, a headless browser) are answered 202 and not stored."
)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


DAY: Final = {"type": "string", "format": "date"}
SITE_ID: Final = _query(
    "site_id", "The site", {"type": "string", "minLength": 1, "maxLength": SITE_ID_MAX, **NO_NUL}, required=True
)
PERIOD_PARAMETERS: Final = [
    SITE_ID,
    _query("period", "The local days reported on (default 30d)", {"type": "string", "enum": list(PERIODS)}),
    _query(
        "date",
        f"The day of day, month of month, year of year, last day of 7d/30d/6mo/12mo; {FIRST_DAY} to {LAST_DAY}; "
        "default today in the time zone",
        DAY,
    ),
    _query("from", "First day of period=custom (included)", DAY),
    _query("to", "Last day of period=custom (included); at most 10 years after from", DAY),
    _query(
        "timezone", "An IANA time zone name (default UTC): days, weeks, months and hours are its", {"type": "string"}
    ),
    _query(
        "filters",
        "Filters separated by ; each dimension==a|b, dimension!=a|b or dimension~substring; (none) matches a missing "
        f"value. Dimensions: {', '.join(DIMENSIONS)}, props.<key>. Operators: {', '.join(OPERATORS)}",
        {"type": "string"},
    ),
]
METRICS_PARAMETER: Final = _query(
    "metrics", f"Comma-separated, from: {', '.join(METRICS)} (default pageviews,visitors)", {"type": "string"}
)


# A share link's token (`analytics share create`) is a bearer token for one site, accepted whether or not stats tokens
# are configured.
SHARE_REFUSED: Final = "a share link's token revoked, unknown, or for another site"


def openapi_document(max_batch_events: int, stats_token_required: bool) -> dict[str, Any]:
    """The document for this configuration: the batch limit and whether stats need a bearer token vary."""
    batch = Annotated[list[EventIn], msgspec.Meta(min_length=1, max_length=max_batch_events)]
    types = (
        *(EventIn, batch, PlausibleEvent, Queued, QueuedCount, Invalid, Fail, StatsFound, Healthy, ReadyState),
        *(AggregateFound, TimeseriesFound, BreakdownFound, RealtimeFound, SitesFound),
    )
    schemas, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    event, events, plausible, queued, queued_count, invalid, fail, found, healthy, ready, *reports, sites = schemas
    refusals = {status: _json(fail, description) for status, description in REFUSALS.items()}
    invalid_body = _json(invalid, "Every problem in the body, at its path; nothing queued")

    def ingest(body: dict[str, Any], accepted: dict[str, Any], summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "requestBody": {"required": True, "description": INGEST_BODY, **_json(body, "")},
                "responses": {"202": _json(accepted, "Queued durably in Redis"), "400": invalid_body, **refusals},
            }
        }

    stats_responses = {
        "200": _json(found, "The site's page views, distinct users and top paths"),
        "400": _json(invalid, "site_id missing or too long, or date not a real calendar date"),
        "404": _json(fail, "No page views for this site (on this day)"),
        "503": _json(fail, "Database unavailable; retry after Retry-After"),
    }
    if stats_token_required:
        stats_responses["401"] = _json(fail, "No bearer token")
        stats_responses["403"] = _json(fail, f"Wrong bearer token, {SHARE_REFUSED}, or origin not allowed")
    else:
        stats_responses["403"] = _json(fail, f"Origin not allowed, or {SHARE_REFUSED}")
    report_parameters = {
        "aggregate": [
            *PERIOD_PARAMETERS,
            METRICS_PARAMETER,
            _query("compare", "Also the same metrics for as many days just before", {"enum": ["previous_period"]}),
        ],
        "timeseries": [
            *PERIOD_PARAMETERS,
            METRICS_PARAMETER,
            _query(
                "interval",
                "Bucket size (default hour for day, month for 6mo/12mo/year/all, day otherwise); hour covers at most "
                "31 days",
                {"type": "string", "enum": list(INTERVALS)},
            ),
        ],
        "breakdown": [
            *PERIOD_PARAMETERS,
            METRICS_PARAMETER,
            _query(
                "property",
                f"The dimension to break down by: {', '.join(DIMENSIONS)}, props.<key>, or props (the props keys)",
                {"type": "string"},
                required=True,
            ),
            _query("limit", "Rows per page", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 10}),
            _query("page", "Page number", {"type": "integer", "minimum": 1, "default": 1}),
        ],
        "realtime": [SITE_ID],
    }
    report_summaries = {
        "aggregate": "Each metric over the period, optionally against the previous period",
        "timeseries": "Each metric per bucket of the period, every bucket in order, zero-filled",
        "breakdown": "Each metric per value of a property, by the first metric, descending",
        "realtime": "Distinct visitors with an event in the last 5 minutes",
    }
    report_operations: dict[str, dict[str, Any]] = {}
    for (kind, parameters), schema in zip(report_parameters.items(), reports, strict=True):
        responses = {
            **stats_responses,
            "200": _json(schema, report_summaries[kind]),
            "400": _json(invalid, "Every problem in the query string, at query.<param>"),
        }
        del responses["404"]
        report_operations[f"/api/v2/stats/{kind}"] = {
            "get": {"summary": report_summaries[kind], "parameters": parameters, "responses": responses}
        }
    sites_responses = {**stats_responses, "200": _json(sites, "The sites the dashboard offers")}
    del sites_responses["400"], sites_responses["404"]
    sites_operation: dict[str, Any] = {
        "summary": "The sites to report on: ANALYTICS_SITES when set, else every site with stored page views",
        "responses": sites_responses,
    }
    stats_operation: dict[str, Any] = {
        "summary": "Page views, distinct users and top 3 paths of a site, for a UTC day or all time",
        "parameters": [
            {
                "name": "site_id",
                "in": "query",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": SITE_ID_MAX, **NO_NUL},
            },
            {
                "name": "date",
                "in": "query",
                "required": False,
                "description": "A UTC day, YYYY-MM-DD; omitted for all time",
                "schema": {"type": "string", "format": "date"},
            },
        ],
        "responses": stats_responses,
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "analytics", "version": "1", "description": "Web analytics ingestion and stats."},
        "paths": {
            "/api/ingestion/event": ingest(event, queued, "Queue one event"),
            "/api/ingestion/events": ingest(events, queued_count, f"Queue 1 to {max_batch_events} events, atomically"),
            "/api/event": ingest(plausible, queued, "Queue an event sent by Plausible's tracker script (Events API)"),
            "/api/reporting/stats": {"get": stats_operation},
            **report_operations,
            "/api/v2/sites": {"get": sites_operation},
            "/api/healthcheck": {"get": {"summary": "Liveness", "responses": {"200": _json(healthy, "Running")}}},
            "/api/ready": {
                "get": {
                    "summary": "Readiness: the dependencies this role needs answer",
                    "responses": {"200": _json(ready, "Ready"), "503": _json(ready, "A dependency is down")},
                }
            },
        },
        "components": {"schemas": components},
    }
    if stats_token_required:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for operation in (stats_operation, sites_operation, *(path["get"] for path in report_operations.values())):
            operation["security"] = [{"bearer": []}]
    return document
