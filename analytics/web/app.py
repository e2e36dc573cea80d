"""The ASGI app every role serves: the two hot ingestion POSTs (and CORS preflights) are dispatched by a dictionary
lookup, everything else goes through Starlette's router.

Starlette's middleware and router cost ~5.6 us of the ~9.6 us an ingest request spends in the app (measured
in-process); routing two fixed paths by dictionary lookup costs nearly nothing.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Final

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import Receive, Scope, Send

from analytics.events.contract import Submission, decode_event, decode_events
from analytics.events.plausible import decode_plausible
from analytics.observability.metrics import Metrics
from analytics.queue.client import QueueSnapshot
from analytics.queue.pusher import Pusher
from analytics.web.access import AccessRules
from analytics.web.asgi import encode, header
from analytics.web.cors import Cors
from analytics.web.dashboard import Dashboard
from analytics.web.faults import http_error, internal_error, send_fault
from analytics.web.health import Health, Readiness
from analytics.web.ingest import Decode, Enrichment, Ingest, queued_count, queued_one
from analytics.web.openapi import openapi_document
from analytics.web.reporting import Reporting

JAVASCRIPT: Final = "application/javascript; charset=utf-8"
TRACKER_CACHE: Final = {"Cache-Control": "public, max-age=3600"}
INGEST_PATHS: Final = ("/api/ingestion/event", "/api/ingestion/events", "/api/event")
REPORT_PATHS: Final = tuple(f"/api/v2/stats/{kind}" for kind in ("aggregate", "timeseries", "breakdown", "realtime"))


@dataclass(frozen=True, slots=True)
class Ingestion:
    """What the api role adds to the app: ingestion and stats, and who may use them. `rollup_pool` serves the reads of
    the rollup tables only (a logical replica of them, or `pool` itself); `pool` the rest (`web.reporting`)."""

    pusher: Pusher
    enrichment: Enrichment
    pool: asyncpg.Pool
    rollup_pool: asyncpg.Pool
    max_body_bytes: int
    max_batch_events: int
    rules: AccessRules = field(default_factory=AccessRules)


class App:
    """The ASGI app. Faults of the hot endpoints become the contract's 500 here; Starlette's own handler (the same
    `web.faults`) answers those of routed endpoints, then re-raises, which is swallowed here: logged once."""

    def __init__(self, starlette: Starlette, hot_posts: Mapping[str, Cors], preflights: Mapping[str, Cors]) -> None:
        self.starlette = starlette
        self._hot_posts = dict(hot_posts)
        self._preflights = dict(preflights)

    @property
    def hot_posts(self) -> Mapping[str, Cors]:
        """The endpoints dispatched before Starlette, by path (bench/app_overhead.py routes them to compare)."""
        return MappingProxyType(self._hot_posts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if scope["method"] == "POST":
                endpoint = self._hot_posts.get(path)
                if endpoint is not None:
                    try:
                        await endpoint(scope, receive, send)
                    except Exception as error:
                        await send_fault(scope, send, error)
                    return
            elif scope["method"] == "OPTIONS":
                cors = self._preflights.get(path)
                origin = header(scope, b"origin")
                if cors is not None and origin is not None:
                    await cors.preflight(origin, send)
                    return
        # A fault of a routed endpoint was answered (500) and logged by web.faults.internal_error, then re-raised.
        with contextlib.suppress(Exception):
            await self.starlette(scope, receive, send)


def _decode_one(body: bytes, received_us: int) -> list[Submission]:
    return [decode_event(body, received_us)]


def create_app(
    metrics: Metrics,
    readiness: Readiness,
    queue_snapshot: Callable[[], Awaitable[QueueSnapshot]],
    ingestion: Ingestion | None = None,
) -> App:
    """Every role serves health, readiness and metrics; the api role adds ingestion, stats, OpenAPI, the
    tracker and the dashboard."""
    health = Health(readiness, metrics, queue_snapshot)
    routes = [
        Route("/api/healthcheck", health.healthcheck, methods=["GET"]),
        Route("/api/ready", health.ready, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
    ]
    hot_posts: dict[str, Cors] = {}
    preflights: dict[str, Cors] = {}
    if ingestion is not None:
        rules = ingestion.rules
        forbidden = metrics.rejected["forbidden"].inc
        decode_batch = functools.partial(decode_events, max_events=ingestion.max_batch_events)
        endpoints: tuple[tuple[Decode, Callable[[int], bytes]], ...] = (
            (_decode_one, queued_one),
            (decode_batch, queued_count),
            (decode_plausible, queued_one),
        )
        for path, (decode, accepted) in zip(INGEST_PATHS, endpoints, strict=True):
            ingest = Ingest(
                ingestion.pusher, metrics, ingestion.max_body_bytes, rules, ingestion.enrichment, decode, accepted
            )
            hot_posts[path] = preflights[path] = Cors(rules.ingest_cors, ingest, forbidden)
            # Other methods on these paths reach the router, which answers the contract's JSON 405.
            routes.append(Route(path, _method_not_allowed, methods=["POST"]))
        reporting = Reporting(ingestion.pool, ingestion.rollup_pool, rules.tokens, metrics)
        stats = Cors(rules.stats_cors, request_response(reporting.stats))
        preflights["/api/reporting/stats"] = stats
        handlers = (reporting.aggregate, reporting.timeseries, reporting.breakdown, reporting.realtime)
        for path, handler in zip(REPORT_PATHS, handlers, strict=True):
            report = preflights[path] = Cors(rules.stats_cors, request_response(handler))
            routes.append(Route(path, report, methods=["GET"]))
        dashboard = Dashboard(reporting, rules.sites)
        sites = preflights["/api/v2/sites"] = Cors(rules.stats_cors, request_response(dashboard.sites))
        routes += [
            Route("/api/v2/sites", sites, methods=["GET"]),
            Route("/dashboard", dashboard.page, methods=["GET"]),
            Route("/dashboard/assets/{name}", dashboard.asset, methods=["GET"]),
            # A site id may hold a slash (a path parameter is decoded before it is matched).
            Route("/dashboard/{site_id:path}", dashboard.page, methods=["GET"]),
            Route("/share/{token}", dashboard.page, methods=["GET"]),
        ]
        documents = _Documents(encode(openapi_document(ingestion.max_batch_events, rules.tokens.required)))
        routes += [
            Route("/api/reporting/stats", stats, methods=["GET"]),
            Route("/api/openapi.json", documents.openapi, methods=["GET"]),
            Route("/tracker.js", documents.tracker, methods=["GET"]),
        ]
    starlette = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    # Starlette would answer `/path/` with a 307 to a URL built from the client's Host header: a 404 instead.
    starlette.router.redirect_slashes = False
    return App(starlette, hot_posts, preflights)


async def _method_not_allowed(request: Request) -> Response:
    """Never reached by a POST (the App answers those first)."""
    raise HTTPException(405)


class _Documents:
    def __init__(self, openapi: bytes) -> None:
        self._openapi = openapi
        self._tracker = resources.files("analytics.web").joinpath("static", "tracker.js").read_bytes()

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")

    async def tracker(self, request: Request) -> Response:
        return Response(self._tracker, media_type=JAVASCRIPT, headers=TRACKER_CACHE)
