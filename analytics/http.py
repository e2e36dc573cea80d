"""The HTTP surface: routes, the contract's JSON shapes, error handlers. No SQL and no Redis commands here."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import uuid
import zlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, TypeVar

import asyncpg
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from analytics.access import AccessRules, CorsPolicy, Headers, Verdict, client_address
from analytics.db import TRANSIENT_ERRORS
from analytics.events import FieldError, InvalidInput, Record, decode_event, decode_events, encode_record, now_ms
from analytics.logs import StateLog
from analytics.metrics import Metrics
from analytics.openapi import openapi_document
from analytics.queue import Pusher, QueueFull, QueueSnapshot, QueueUnavailable
from analytics.responses import Fail, Healthy, InternalError, Invalid, Queued, ReadyState, StatsFound
from analytics.stats import parse_stats_query, site_stats

logger = logging.getLogger(__name__)

T = TypeVar("T")

JSON_HEADERS: Final = [(b"content-type", b"application/json")]
RETRY_AFTER: Final = (b"retry-after", b"1")
HEALTHY: Final = Healthy("API is running, healthy, and ready!")
NO_DATA: Final = "No analytics data found for the specified criteria."
INTERNAL_ERROR: Final = InternalError()
READINESS_TIMEOUT_S: Final = 1.0
# How long a check this role does not need may still take once the required ones have answered.
OPTIONAL_CHECK_GRACE_S: Final = 0.05
# A stats answer, or a 503 saying the database did not give one in time.
STATS_DEADLINE_S: Final = 3.0
PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"
JAVASCRIPT: Final = "application/javascript; charset=utf-8"
TRACKER_CACHE: Final = {"Cache-Control": "public, max-age=3600"}
GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
UTF8_BOM: Final = b"\xef\xbb\xbf"
ORIGIN_REFUSED: Final = Fail(status="fail", message="origin not allowed")

_encode = msgspec.json.Encoder().encode
_QUEUED: Final = _encode(Queued())
_ORIGIN_REFUSED_BODY: Final = _encode(ORIGIN_REFUSED)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


class BodyTooLarge(Exception):
    pass


class BadGzip(Exception):
    pass


class ClientGone(Exception):
    """The client hung up (or was cut off by a read timeout) before its body arrived: there is no one to answer."""


HealthCheck = Callable[[], Awaitable[None]]


class Readiness:
    """Named dependency checks, run concurrently; ready when every required one answers within the timeout.

    Only the required checks are waited for: a check this role can do without (PostgreSQL for the api role) is
    reported as it stands once the required ones are in, after at most a short grace, so a frozen database never
    slows an ingestion pod's probe.
    """

    def __init__(self, checks: Mapping[str, HealthCheck], required: Collection[str]) -> None:
        self._checks = dict(checks)
        self._required = frozenset(required)

    async def __call__(self) -> tuple[bool, dict[str, str]]:
        probes = {name: asyncio.ensure_future(check()) for name, check in self._checks.items()}
        required = [probe for name, probe in probes.items() if name in self._required]
        if required:
            await asyncio.wait(required, timeout=READINESS_TIMEOUT_S)
        optional = [probe for probe in probes.values() if not probe.done()]
        if optional:
            await asyncio.wait(optional, timeout=OPTIONAL_CHECK_GRACE_S if required else READINESS_TIMEOUT_S)
        states = {name: _settled_state(probe) for name, probe in probes.items()}
        return all(states[name] == "up" for name in self._required), states


def _settled_state(probe: asyncio.Future[None]) -> str:
    """`up` for a probe that finished cleanly; anything else is `down`, and an unfinished one is abandoned."""
    if not probe.done():
        _abandon(probe)
        return "down"
    return "up" if not probe.cancelled() and probe.exception() is None else "down"


def _abandon(future: asyncio.Future[Any]) -> None:
    """Cancel without waiting: asyncpg's cancellation of a query sends a cancel request to the server and waits for
    it, so awaiting it (as `asyncio.wait_for` does) takes as long as a frozen server stays frozen."""
    future.cancel()
    future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved


async def within(timeout_s: float, awaitable: Awaitable[T]) -> T:
    """Await `awaitable` for at most `timeout_s`, raising `TimeoutError` then and abandoning (not awaiting) it."""
    future = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({future}, timeout=timeout_s)
    if not done:
        _abandon(future)
        raise TimeoutError(f"no answer within {timeout_s:g} s")
    return future.result()


@dataclass(frozen=True, slots=True)
class Ingestion:
    """What the api role adds to the app: ingestion and stats, and who may use them."""

    pusher: Pusher
    pool: asyncpg.Pool
    max_body_bytes: int
    max_batch_events: int
    rules: AccessRules = field(default_factory=AccessRules)


def _is_json(content_type: bytes | None) -> bool:
    """JSON, `+json` types, text/plain (sendBeacon's type) and a missing header are read as JSON; others get 415."""
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    is_json_suffix = media_type.startswith(b"application/") and media_type.endswith(b"+json")
    return media_type in (b"application/json", b"text/plain") or is_json_suffix


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _read_body(headers: Mapping[bytes, bytes], receive: Receive, limit: int) -> bytes:
    """Read at most `limit` bytes; refuse early on a declared Content-Length, and stop reading past the limit."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _gunzip(body: bytes, limit: int) -> bytes:
    """Inflate at most `limit` + 1 bytes: a gzip bomb costs the limit, never its expansion.

    A gzip file may hold several members one after another (RFC 1952 §2.2; `cat a.gz b.gz`); all are inflated.
    """
    members: list[bytes] = []
    size = 0
    remaining = body
    while True:
        inflater = zlib.decompressobj(GZIP_WBITS)
        try:
            inflated = inflater.decompress(remaining, limit + 1 - size)
        except zlib.error:
            raise BadGzip from None
        size += len(inflated)
        if size > limit:
            raise BodyTooLarge
        if not inflater.eof:
            raise BadGzip
        members.append(inflated)
        remaining = inflater.unused_data
        if not remaining:
            return b"".join(members)


async def _send(send: Send, status: int, body: bytes, extra_headers: Headers = ()) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _retry_after(wait_s: float) -> tuple[bytes, bytes]:
    return (b"retry-after", str(max(1, math.ceil(wait_s))).encode())


def _queued(count: int) -> bytes:
    return _QUEUED


def _queued_count(count: int) -> bytes:
    return _encode({"status": "queued", "count": count})


def _decode_one(body: bytes) -> list[Record]:
    return [decode_event(body)]


Answer = tuple[int, bytes, Headers]


def _first_few(names: Sequence[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


class Ingest:
    """An ingestion endpoint as a bare ASGI app: the hot path builds no Request or Response objects.

    `decode` turns a body into records (or raises `InvalidInput`); `accepted` renders the 202 body for n records.
    Checks run cheapest first: origin and client rate limit before the body is read, site checks after decoding.
    """

    def __init__(
        self,
        pusher: Pusher,
        metrics: Metrics,
        max_body_bytes: int,
        rules: AccessRules,
        decode: Callable[[bytes], list[Record]],
        accepted: Callable[[int], bytes],
    ) -> None:
        self._pusher = pusher
        self._decode = decode
        self._accepted = accepted
        self._max_body_bytes = max_body_bytes
        self._cors = rules.ingest_cors
        self._sites = rules.sites
        self._per_client = rules.per_client
        self._per_site = rules.per_site
        self._trusted_proxy_header = rules.trusted_proxy_header
        self._events_accepted = metrics.events_accepted
        self._rejected = metrics.rejected
        self._unavailable = metrics.unavailable.labels("redis")
        self._too_large = _encode(Fail(status="fail", message=f"request body exceeds {max_body_bytes} bytes"))
        self._unsupported = _encode(Fail(status="fail", message="Content-Type must be application/json or text/plain"))
        self._unsupported_encoding = _encode(Fail(status="fail", message="Content-Encoding must be gzip or identity"))
        self._bad_gzip = _encode(Invalid(errors=[FieldError("body", "body is not valid gzip")]))
        self._client_limited = _encode(Fail(status="fail", message="too many requests from this client"))
        self._full = _encode(Fail(status="error", message="queue is full, retry later"))
        self._down = _encode(Fail(status="error", message="queue unavailable"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        cors = self._cors.response_headers(headers.get(b"origin"))
        if cors is None:
            self._rejected["forbidden"].inc()
            await _send(send, 403, _ORIGIN_REFUSED_BODY)
            return
        try:
            status, body, extra = await self._answer(scope, receive, headers)
        except ClientGone:
            return
        await _send(send, status, body, [*extra, *cors] if cors else extra)

    async def _answer(self, scope: Scope, receive: Receive, headers: dict[bytes, bytes]) -> Answer:
        if self._per_client is not None:
            wait_s = self._per_client.take(client_address(scope, headers, self._trusted_proxy_header))
            if wait_s:
                self._rejected["rate_limited"].inc()
                return 429, self._client_limited, [_retry_after(wait_s)]
        if not _is_json(headers.get(b"content-type")):
            self._rejected["unsupported_media_type"].inc()
            return 415, self._unsupported, ()
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"identity", b"gzip"):
            self._rejected["unsupported_media_type"].inc()
            return 415, self._unsupported_encoding, ()
        try:
            body = await _read_body(headers, receive, self._max_body_bytes)
            if encoding == b"gzip":
                body = _gunzip(body, self._max_body_bytes)
            if body.startswith(UTF8_BOM):  # .NET and PowerShell send one; RFC 8259 lets a parser ignore it
                body = body[len(UTF8_BOM) :]
            records = self._decode(body)
        except BodyTooLarge:
            self._rejected["too_large"].inc()
            return 413, self._too_large, ()
        except BadGzip:
            self._rejected["invalid"].inc()
            return 400, self._bad_gzip, ()
        except InvalidInput as invalid:
            self._rejected["invalid"].inc()
            return 400, _encode(Invalid(errors=invalid.errors)), ()
        if self._sites is not None or self._per_site is not None:
            refusal = self._check_sites(records)
            if refusal is not None:
                return refusal
        accepted_ms = now_ms()
        try:
            await self._pusher.push([encode_record(record, accepted_ms) for record in records])
        except QueueFull:
            self._rejected["queue_full"].inc()
            return 503, self._full, [RETRY_AFTER]
        except QueueUnavailable:
            self._rejected["queue_unavailable"].inc()
            self._unavailable.inc()
            return 503, self._down, [RETRY_AFTER]
        self._events_accepted.inc(len(records))
        return 202, self._accepted(len(records)), ()

    def _check_sites(self, records: list[Record]) -> Answer | None:
        """The allow-list, then the per-site budget; a batch passes whole or not at all."""
        events_per_site: dict[str, int] = {}
        for record in records:
            events_per_site[record[0]] = events_per_site.get(record[0], 0) + 1
        if self._sites is not None:
            unknown = [site for site in events_per_site if site not in self._sites]
            if unknown:
                self._rejected["forbidden"].inc()
                message = f"site_id not accepted here: {_first_few(sorted(unknown))}"
                return 403, _encode(Fail(status="fail", message=message)), ()
        if self._per_site is not None:
            wait_s = self._per_site.take_all(events_per_site)
            if wait_s:
                self._rejected["rate_limited"].inc()
                message = f"too many events for site_id {_first_few(sorted(events_per_site))}"
                return 429, _encode(Fail(status="fail", message=message)), [_retry_after(wait_s)]
        return None


async def healthcheck(request: Request) -> Response:
    return JSONResponse(HEALTHY)


async def ready(request: Request) -> Response:
    is_ready, checks = await request.app.state.readiness()
    if is_ready:
        return JSONResponse(ReadyState(status="ready", checks=checks))
    down = ", ".join(name for name, state in checks.items() if state == "down")
    return JSONResponse(
        ReadyState(status="error", message=f"not ready: {down} unavailable", checks=checks),
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def metrics_endpoint(request: Request) -> Response:
    """Counters of this process, plus the queue as Redis sees it now (skipped, not failed, when Redis is away)."""
    metrics: Metrics = request.app.state.metrics
    try:
        queue: QueueSnapshot = await within(READINESS_TIMEOUT_S, request.app.state.queue_snapshot())
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
    """The stats answer, with the CORS headers of the stats policy; an origin it does not allow gets 403."""
    rules: AccessRules = request.app.state.ingestion.rules
    origin = request.headers.get("origin")
    cors = rules.stats_cors.response_headers(None if origin is None else origin.encode("latin-1"))
    if cors is None:
        return JSONResponse(ORIGIN_REFUSED, status_code=403)
    response = await _authorized_stats(request, rules)
    response.raw_headers.extend(cors)
    return response


async def _authorized_stats(request: Request, rules: AccessRules) -> Response:
    verdict = rules.tokens.check(request.headers.get("authorization"))
    if verdict is Verdict.MISSING:
        return JSONResponse(
            Fail(status="fail", message="Authorization: Bearer <token> required"),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if verdict is Verdict.WRONG:
        return JSONResponse(Fail(status="fail", message="token not accepted"), status_code=403)
    try:
        query = parse_stats_query(request.query_params.get("site_id"), request.query_params.get("date"))
    except InvalidInput as invalid:
        return JSONResponse(Invalid(errors=invalid.errors), status_code=400)
    state = request.app.state
    try:
        result = await within(STATS_DEADLINE_S, site_stats(state.ingestion.pool, query))
    except TRANSIENT_ERRORS as error:
        state.database_state.failed(error)
        state.metrics.unavailable.labels("postgresql").inc()
        return JSONResponse(
            Fail(status="error", message="database unavailable"), status_code=503, headers={"Retry-After": "1"}
        )
    state.database_state.recovered()
    if result is None:
        return JSONResponse(Fail(status="fail", message=NO_DATA), status_code=404)
    return JSONResponse(StatsFound(data=result))


async def openapi(request: Request) -> Response:
    return Response(request.app.state.openapi, media_type="application/json")


async def tracker(request: Request) -> Response:
    return Response(request.app.state.tracker, media_type=JAVASCRIPT, headers=TRACKER_CACHE)


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


async def _preflight(send: Send, policy: CorsPolicy, origin: bytes) -> None:
    """Answered before Starlette: a browser may send one before every event it cannot send as a simple request."""
    headers = policy.preflight_headers(origin)
    if headers is None:
        await _send(send, 403, _ORIGIN_REFUSED_BODY)
        return
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


class App:
    """The ASGI app: the hot ingestion POSTs (and CORS preflights) skip Starlette; everything else goes through it.

    Starlette's middleware and router cost ~5.6 us of the ~9.6 us an ingest request spends in the app
    (measured in-process); routing two fixed paths by dictionary lookup costs nearly nothing.
    """

    def __init__(
        self, starlette: Starlette, hot_posts: Mapping[str, Ingest], preflights: Mapping[str, CorsPolicy]
    ) -> None:
        self.starlette = starlette
        self._hot_posts = dict(hot_posts)
        self._preflights = dict(preflights)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "POST":
                handler = self._hot_posts.get(scope["path"])
                if handler is not None:
                    await self._guarded(handler, scope, receive, send)
                    return
            elif scope["method"] == "OPTIONS":
                policy = self._preflights.get(scope["path"])
                origin = _header(scope, b"origin")
                if policy is not None and origin is not None:
                    await _preflight(send, policy, origin)
                    return
        await self.starlette(scope, receive, send)

    @staticmethod
    async def _guarded(handler: Ingest, scope: Scope, receive: Receive, send: Send) -> None:
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
    """Every role serves health, readiness and metrics; the api role adds ingestion, stats, OpenAPI and the tracker."""
    routes = [
        Route("/api/healthcheck", healthcheck, methods=["GET"]),
        Route("/api/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    hot_posts: dict[str, Ingest] = {}
    preflights: dict[str, CorsPolicy] = {}
    if ingestion is not None:
        rules = ingestion.rules
        decode_batch = functools.partial(decode_events, max_events=ingestion.max_batch_events)
        hot_posts = {
            "/api/ingestion/event": Ingest(
                ingestion.pusher, metrics, ingestion.max_body_bytes, rules, _decode_one, _queued
            ),
            "/api/ingestion/events": Ingest(
                ingestion.pusher, metrics, ingestion.max_body_bytes, rules, decode_batch, _queued_count
            ),
        }
        preflights = dict.fromkeys(hot_posts, rules.ingest_cors)
        preflights["/api/reporting/stats"] = rules.stats_cors
        # Also routed through Starlette, so other methods on these paths get the contract's JSON 405.
        routes += [Route(path, handler, methods=["POST"]) for path, handler in hot_posts.items()]
        routes += [
            Route("/api/reporting/stats", stats, methods=["GET"]),
            Route("/api/openapi.json", openapi, methods=["GET"]),
            Route("/tracker.js", tracker, methods=["GET"]),
        ]
    starlette = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    # Starlette would answer `/path/` with a 307 to a URL built from the client's Host header: a 404 instead.
    starlette.router.redirect_slashes = False
    starlette.state.metrics = metrics
    starlette.state.readiness = readiness
    starlette.state.queue_snapshot = queue_snapshot
    starlette.state.ingestion = ingestion
    starlette.state.database_state = StateLog(logger, "stats unavailable, answering 503", "stats available again")
    if ingestion is not None:
        document = openapi_document(ingestion.max_batch_events, ingestion.rules.tokens.required)
        starlette.state.openapi = _encode(document)
        starlette.state.tracker = resources.files("analytics").joinpath("tracker.js").read_bytes()
    return App(starlette, hot_posts, preflights)
