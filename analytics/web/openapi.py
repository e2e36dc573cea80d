"""The OpenAPI 3.1 document, generated from the msgspec types the handlers decode and encode."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from analytics.events.contract import NO_NUL, SITE_ID_MAX, EventIn
from analytics.events.plausible import PlausibleEvent
from analytics.web.responses import Fail, Healthy, Invalid, Queued, QueuedCount, ReadyState, StatsFound

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


def openapi_document(max_batch_events: int, stats_token_required: bool) -> dict[str, Any]:
    """The document for this configuration: the batch limit and whether stats need a bearer token vary."""
    batch = Annotated[list[EventIn], msgspec.Meta(min_length=1, max_length=max_batch_events)]
    types = (EventIn, batch, PlausibleEvent, Queued, QueuedCount, Invalid, Fail, StatsFound, Healthy, ReadyState)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    event, events, plausible, queued, queued_count, invalid, fail, found, healthy, ready = schemas
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
        stats_responses["403"] = _json(fail, "Wrong bearer token, or origin not allowed")
    else:
        stats_responses["403"] = _json(fail, "Origin not allowed")
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
        stats_operation["security"] = [{"bearer": []}]
    return document
