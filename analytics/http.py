"""The HTTP surface: routes, the contract's JSON shapes, error handlers. No SQL and no Redis commands here."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
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
from analytics.events import FieldError, InvalidInput, Record, decode_event, decode_events, encode_record
from analytics.queue import Pusher, QueueFull, QueueUnavailable, describe_error
from analytics.stats import parse_stats_query, site_stats

logger = logging.getLogger(__name__)

JSON_HEADERS: Final = [(b"content-type", b"application/json")]
RETRY_AFTER_S: Final = 1
HEALTHY: Final = {"message": "API is running, healthy, and ready!"}
NO_DATA: Final = "No analytics data found for the specified criteria."
INTERNAL_ERROR: Final = {"status": "error", "message": "Internal Server Error"}

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


def _is_json(content_type: bytes | None) -> bool:
    """JSON, `+json` types and a missing header are read as JSON; any other declared type is refused (415)."""
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    )


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


def _unavailable(message: str) -> JSONResponse:
    return JSONResponse(
        Fail(status="error", message=message), status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


def _queued(count: int) -> bytes:
    return _QUEUED


def _queued_count(count: int) -> bytes:
    return _encode({"status": "queued", "count": count})


class Ingest:
    """An ingestion endpoint as a bare ASGI app: the hot path builds no Request or Response objects.

    `decode` turns a body into records (or raises `InvalidInput`); `accepted` renders the 202 body for n records.
    """

    def __init__(
        self,
        pusher: Pusher,
        max_body_bytes: int,
        decode: Callable[[bytes], list[Record]],
        accepted: Callable[[int], bytes],
    ) -> None:
        self._pusher = pusher
        self._max_body_bytes = max_body_bytes
        self._decode = decode
        self._accepted = accepted
        self._too_large = _encode(Fail(status="fail", message=f"request body exceeds {max_body_bytes} bytes"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_json(_header(scope, b"content-type")):
            await _send(send, 415, _encode(Fail(status="fail", message="Content-Type must be application/json")))
            return
        try:
            body = await _read_body(scope, receive, self._max_body_bytes)
        except BodyTooLarge:
            await _send(send, 413, self._too_large)
            return
        try:
            records = self._decode(body)
        except InvalidInput as invalid:
            await _send(send, 400, _encode(Invalid(errors=invalid.errors)))
            return
        try:
            await self._pusher.push([encode_record(record) for record in records])
        except (QueueFull, QueueUnavailable) as refused:
            message = "queue is full, retry later" if isinstance(refused, QueueFull) else "queue unavailable"
            await _send(send, 503, _encode(Fail(status="error", message=message)), [(b"retry-after", b"1")])
            return
        await _send(send, 202, self._accepted(len(records)))


async def healthcheck(request: Request) -> Response:
    return JSONResponse(HEALTHY)


async def stats(request: Request) -> Response:
    try:
        query = parse_stats_query(request.query_params.get("site_id"), request.query_params.get("date"))
    except InvalidInput as invalid:
        return JSONResponse(Invalid(errors=invalid.errors), status_code=400)
    pool: asyncpg.Pool = request.app.state.pool
    try:
        result = await site_stats(pool, query)
    except TRANSIENT_ERRORS as error:
        logger.warning("stats unavailable: %s", describe_error(error))
        return _unavailable("database unavailable")
    if result is None:
        return JSONResponse(Fail(status="fail", message=NO_DATA), status_code=404)
    return JSONResponse({"status": "success", "data": result})


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = "Route not found." if error.status_code == 404 else error.detail
    return JSONResponse(Fail(status="fail", message=message), status_code=error.status_code, headers=error.headers)


async def internal_error(request: Request, error: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse(INTERNAL_ERROR, status_code=500)


def _decode_one(body: bytes) -> list[Record]:
    return [decode_event(body)]


def create_app(pusher: Pusher, pool: asyncpg.Pool, max_body_bytes: int, max_batch_events: int = 1000) -> Starlette:
    decode_batch = functools.partial(decode_events, max_events=max_batch_events)
    app = Starlette(
        routes=[
            Route("/api/healthcheck", healthcheck, methods=["GET"]),
            Route("/api/ingestion/event", Ingest(pusher, max_body_bytes, _decode_one, _queued), methods=["POST"]),
            Route(
                "/api/ingestion/events", Ingest(pusher, max_body_bytes, decode_batch, _queued_count), methods=["POST"]
            ),
            Route("/api/reporting/stats", stats, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.state.pool = pool
    return app
