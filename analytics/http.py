"""The HTTP surface: routes, the contract's JSON shapes, error handlers. No SQL and no Redis commands here."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from analytics.db import TRANSIENT_ERRORS
from analytics.events import FieldError, InvalidInput, Record, decode_event, decode_events, encode_record, now_ms
from analytics.logs import StateLog
from analytics.metrics import Metrics
from analytics.queue import Pusher, QueueFull, QueueSnapshot, QueueUnavailable
from analytics.stats import parse_stats_query, site_stats

logger = logging.getLogger(__name__)

JSON_HEADERS: Final = [(b"content-type", b"application/json")]
RETRY_AFTER: Final = (b"retry-after", b"1")
HEALTHY: Final = {"message": "API is running, healthy, and ready!"}
NO_DATA: Final = "No analytics data found for the specified criteria."
INTERNAL_ERROR: Final = {"status": "error", "message": "Internal Server Error"}
READINESS_TIMEOUT_S: Final = 1.0
PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"

_encode = msgspec.json.Encoder().encode
_QUEUED: Final = _encode({"status": "queued"})


class Fail(msgspec.Struct, frozen=True):
    status: str
    message: str


class Invalid(msgspec.Struct, frozen=True, kw_only=True):
    status: str = "fail"
    errors: list[FieldError]


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


class BodyTooLarge(Exception):
    pass


HealthCheck = Callable[[], Awaitable[None]]


class Readiness:
    """Named dependency checks, run concurrently with a timeout; ready when every required one answers."""

    def __init__(self, checks: Mapping[str, HealthCheck], required: Collection[str]) -> None:
        self._checks = dict(checks)
        self._required = frozenset(required)

    async def __call__(self) -> tuple[bool, dict[str, str]]:
        results = await asyncio.gather(*(self._probe(check) for check in self._checks.values()))
        states = dict(zip(self._checks, results, strict=True))
        return all(states[name] == "up" for name in self._required), states

    @staticmethod
    async def _probe(check: HealthCheck) -> str:
        try:
            await asyncio.wait_for(check(), READINESS_TIMEOUT_S)
        except Exception:
            return "down"
        return "up"


@dataclass(frozen=True, slots=True)
class Ingestion:
    """What the api role adds to the app: ingestion and stats."""

    pusher: Pusher
    pool: asyncpg.Pool
    max_body_bytes: int
    max_batch_events: int


def _is_json(content_type: bytes | None) -> bool:
    """JSON, `+json` types and a missing header are read as JSON; any other declared type is refused (415)."""
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    is_json_suffix = media_type.startswith(b"application/") and media_type.endswith(b"+json")
    return media_type == b"application/json" or is_json_suffix


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Read at most `limit` bytes; refuse early on a declared Content-Length, and stop reading past the limit."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _queued(count: int) -> bytes:
    return _QUEUED


def _queued_count(count: int) -> bytes:
    return _encode({"status": "queued", "count": count})


def _decode_one(body: bytes) -> list[Record]:
    return [decode_event(body)]


class Ingest:
    """An ingestion endpoint as a bare ASGI app: the hot path builds no Request or Response objects.

    `decode` turns a body into records (or raises `InvalidInput`); `accepted` renders the 202 body for n records.
    """

    def __init__(
        self,
        pusher: Pusher,
        metrics: Metrics,
        max_body_bytes: int,
        decode: Callable[[bytes], list[Record]],
        accepted: Callable[[int], bytes],
    ) -> None:
        self._pusher = pusher
        self._decode = decode
        self._accepted = accepted
        self._max_body_bytes = max_body_bytes
        self._events_accepted = metrics.events_accepted
        self._rejected = metrics.rejected
        self._unavailable = metrics.unavailable.labels("redis")
        self._too_large = _encode(Fail(status="fail", message=f"request body exceeds {max_body_bytes} bytes"))
        self._unsupported = _encode(Fail(status="fail", message="Content-Type must be application/json"))
        self._full = _encode(Fail(status="error", message="queue is full, retry later"))
        self._down = _encode(Fail(status="error", message="queue unavailable"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_json(_header(scope, b"content-type")):
            self._rejected["unsupported_media_type"].inc()
            await _send(send, 415, self._unsupported)
            return
        try:
            body = await _read_body(scope, receive, self._max_body_bytes)
        except BodyTooLarge:
            self._rejected["too_large"].inc()
            await _send(send, 413, self._too_large)
            return
        try:
            records = self._decode(body)
        except InvalidInput as invalid:
            self._rejected["invalid"].inc()
            await _send(send, 400, _encode(Invalid(errors=invalid.errors)))
            return
        accepted_ms = now_ms()
        try:
            await self._pusher.push([encode_record(record, accepted_ms) for record in records])
        except QueueFull:
            self._rejected["queue_full"].inc()
            await _send(send, 503, self._full, [RETRY_AFTER])
            return
        except QueueUnavailable:
            self._rejected["queue_unavailable"].inc()
            self._unavailable.inc()
            await _send(send, 503, self._down, [RETRY_AFTER])
            return
        self._events_accepted.inc(len(records))
        await _send(send, 202, self._accepted(len(records)))


async def healthcheck(request: Request) -> Response:
    return JSONResponse(HEALTHY)


async def ready(request: Request) -> Response:
    is_ready, checks = await request.app.state.readiness()
    if is_ready:
        return JSONResponse({"status": "ready", "checks": checks})
    down = ", ".join(name for name, state in checks.items() if state == "down")
    return JSONResponse(
        {"status": "error", "message": f"not ready: {down} unavailable", "checks": checks},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def metrics_endpoint(request: Request) -> Response:
    """Counters of this process, plus the queue as Redis sees it now (skipped, not failed, when Redis is away)."""
    metrics: Metrics = request.app.state.metrics
    try:
        queue: QueueSnapshot = await asyncio.wait_for(request.app.state.queue_snapshot(), READINESS_TIMEOUT_S)
    except Exception:
        logger.debug("queue gauges skipped: Redis did not answer")
    else:
        metrics.queue_depth.set(queue.queued)
        metrics.dead_letters.set(queue.dead)
        metrics.writers_alive.set(queue.writers_alive)
        metrics.processing.clear()
        for writer_id, held in queue.processing.items():
            metrics.processing.labels(writer_id).set(held)
    return Response(metrics.render(), media_type=PROMETHEUS_TEXT)


async def stats(request: Request) -> Response:
    try:
        query = parse_stats_query(request.query_params.get("site_id"), request.query_params.get("date"))
    except InvalidInput as invalid:
        return JSONResponse(Invalid(errors=invalid.errors), status_code=400)
    state = request.app.state
    try:
        result = await site_stats(state.ingestion.pool, query)
    except TRANSIENT_ERRORS as error:
        state.database_state.failed(error)
        state.metrics.unavailable.labels("postgresql").inc()
        return JSONResponse(
            Fail(status="error", message="database unavailable"), status_code=503, headers={"Retry-After": "1"}
        )
    state.database_state.recovered()
    if result is None:
        return JSONResponse(Fail(status="fail", message=NO_DATA), status_code=404)
    return JSONResponse({"status": "success", "data": result})


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = "Route not found." if error.status_code == 404 else error.detail
    return JSONResponse(Fail(status="fail", message=message), status_code=error.status_code, headers=error.headers)


def _log_fault(method: str, path: str, client_request_id: str | None, error: Exception) -> str:
    """Details go to the log under a request id; the client gets the id, never the details."""
    request_id = client_request_id or uuid.uuid4().hex
    logger.error("unhandled error on %s %s", method, path, exc_info=error, extra={"request_id": request_id})
    return request_id


async def internal_error(request: Request, error: Exception) -> Response:
    request_id = _log_fault(request.method, request.url.path, request.headers.get("x-request-id"), error)
    return JSONResponse(INTERNAL_ERROR, status_code=500, headers={"X-Request-ID": request_id})


class App:
    """The ASGI app: the hot ingestion POSTs go straight to their handlers, everything else through Starlette.

    Starlette's middleware and router cost ~5.6 us of the ~9.6 us an ingest request spends in the app
    (measured in-process); routing two fixed paths by dictionary lookup costs nearly nothing.
    """

    def __init__(self, starlette: Starlette, hot_posts: Mapping[str, Ingest]) -> None:
        self.starlette = starlette
        self._hot_posts = dict(hot_posts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._hot_posts.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.starlette(scope, receive, send)
            return
        try:
            await handler(scope, receive, send)
        except Exception as error:
            client_id = _header(scope, b"x-request-id")
            request_id = _log_fault("POST", scope["path"], client_id.decode("latin-1") if client_id else None, error)
            await _send(send, 500, _encode(INTERNAL_ERROR), [(b"x-request-id", request_id.encode("latin-1"))])


def create_app(
    metrics: Metrics,
    readiness: Readiness,
    queue_snapshot: Callable[[], Awaitable[QueueSnapshot]],
    ingestion: Ingestion | None = None,
) -> App:
    """Every role serves health, readiness and metrics; the api role adds ingestion and stats."""
    routes = [
        Route("/api/healthcheck", healthcheck, methods=["GET"]),
        Route("/api/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    hot_posts: dict[str, Ingest] = {}
    if ingestion is not None:
        decode_batch = functools.partial(decode_events, max_events=ingestion.max_batch_events)
        hot_posts = {
            "/api/ingestion/event": Ingest(ingestion.pusher, metrics, ingestion.max_body_bytes, _decode_one, _queued),
            "/api/ingestion/events": Ingest(
                ingestion.pusher, metrics, ingestion.max_body_bytes, decode_batch, _queued_count
            ),
        }
        # Also routed through Starlette, so other methods on these paths get the contract's JSON 405.
        routes += [Route(path, handler, methods=["POST"]) for path, handler in hot_posts.items()]
        routes.append(Route("/api/reporting/stats", stats, methods=["GET"]))
    starlette = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    starlette.state.metrics = metrics
    starlette.state.readiness = readiness
    starlette.state.queue_snapshot = queue_snapshot
    starlette.state.ingestion = ingestion
    starlette.state.database_state = StateLog(logger, "stats unavailable, answering 503", "stats available again")
    return App(starlette, hot_posts)
