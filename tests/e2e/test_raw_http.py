"""What plain clients see over raw sockets: header size limit (431), early answers to bodies sent whole before reading
(413), and JSON for what the HTTP parser itself refuses (400).

Clients here are blocking sockets in threads, as urllib and most SDKs are: the server runs in this event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from starlette.types import Receive, Scope, Send

from analytics.config import Settings
from analytics.observability.metrics import Metrics
from analytics.queue.pusher import Pusher
from analytics.web.server import DRAIN_LIMIT_BYTES, DRAIN_TIMEOUT_S
from tests.helpers.factories import event
from tests.helpers.servers import api_app, serving

Address = tuple[str, int]
Response = tuple[int, dict[str, str], Any]

SETTINGS = Settings()
HEADER_LIMIT = SETTINGS.max_header_bytes
TOO_LARGE_BODY = b"x" * (3 * SETTINGS.max_body_bytes)
# How long past a bound the server may take to act on it: timer granularity and a loaded 2-core machine.
GRACE_S = 5.0
# uvicorn's default keep-alive timeout, which the service does not change.
KEEP_ALIVE_S = 5.0


@pytest.fixture
async def address(pusher: Pusher, pool: asyncpg.Pool) -> AsyncIterator[Address]:
    async with serving(api_app(pusher, pool, Metrics(), SETTINGS), SETTINGS) as url:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        yield parts.hostname, parts.port


def head(target: bytes, size: int = 0, *fields: bytes, method: bytes = b"GET") -> bytes:
    """A request line and headers ending in the blank line, padded with one header to exactly `size` bytes."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: x", *fields]
    unpadded = b"\r\n".join([*lines, b"", b""])
    if size:
        padding = b"X-Pad: "
        lines.append(padding + b"a" * (size - len(unpadded) - len(padding) - 2))
    request = b"\r\n".join([*lines, b"", b""])
    assert not size or len(request) == size
    return request


def post(body: bytes, *fields: bytes) -> bytes:
    return head(b"/api/ingestion/event", 0, b"Content-Length: %d" % len(body), *fields, method=b"POST") + body


def chunked_post(body: bytes, *fields: bytes) -> bytes:
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in (body[i : i + 65536] for i in range(0, len(body), 65536))]
    fields = (b"Transfer-Encoding: chunked", *fields)
    return head(b"/api/ingestion/event", 0, *fields, method=b"POST") + b"".join(chunks) + b"0\r\n\r\n"


def read_response(stream: io.BufferedReader) -> Response:
    """One response from a socket's binary file: its status, headers (lower-case names) and JSON body."""
    status = int(stream.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, value = line.decode("latin-1").split(":", 1)
        headers[name.strip().lower()] = value.strip()
    return status, headers, json.loads(stream.read(int(headers["content-length"])))


def exchange(address: Address, request: bytes) -> list[Response]:
    """Send the whole request before reading, as urllib does; every response until the server closes (EOF)."""
    with socket.create_connection(address, timeout=10) as sock, sock.makefile("rb") as stream:
        sock.sendall(request)
        responses = []
        while stream.peek(1):
            responses.append(read_response(stream))
        return responses


def fail(message: str) -> dict[str, str]:
    return {"status": "fail", "message": message}


def assert_refused(responses: list[Response], status: int, message: str) -> None:
    """One JSON client error with `connection: close`, after which the server closed the connection."""
    assert len(responses) == 1
    code, headers, body = responses[0]
    assert (code, body) == (status, fail(message))
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"


# Request headers: a limit, enforced before httptools buffers them.


@pytest.mark.parametrize("size", [HEADER_LIMIT + 1, 1024 * 1024])
async def test_headers_over_the_limit_get_431_and_the_connection_closes(address: Address, size: int) -> None:
    responses = await asyncio.to_thread(exchange, address, head(b"/api/healthcheck", size))
    assert_refused(responses, 431, f"request headers exceed {HEADER_LIMIT} bytes")


async def test_headers_at_the_limit_are_served(address: Address) -> None:
    request = head(b"/api/healthcheck", HEADER_LIMIT, b"Connection: close")
    [(status, _, _)] = await asyncio.to_thread(exchange, address, request)
    assert status == 200


def converse(address: Address, requests: list[bytes]) -> list[Response]:
    """Send each request after reading the answer to the one before; the answers, once the server has closed."""
    with socket.create_connection(address, timeout=10) as sock, sock.makefile("rb") as stream:
        responses = []
        for request in requests:
            sock.sendall(request)
            responses.append(read_response(stream))
        assert stream.read() == b""
        return responses


async def test_each_keep_alive_request_has_its_own_header_limit(address: Address) -> None:
    served = head(b"/api/healthcheck", HEADER_LIMIT)
    responses = await asyncio.to_thread(
        converse, address, [served, served, head(b"/api/healthcheck", HEADER_LIMIT + 1)]
    )
    assert [status for status, _, _ in responses] == [200, 200, 431]


async def test_a_pipelined_request_is_held_to_the_limit(address: Address) -> None:
    """Sent in the same read as the request before, it is counted from the next read on: the limit plus one read."""
    request = head(b"/api/healthcheck", HEADER_LIMIT) + head(b"/api/healthcheck", 1024 * 1024)
    responses = await asyncio.to_thread(exchange, address, request)
    assert [status for status, _, _ in responses] == [200, 431]


async def test_a_body_read_with_its_headers_is_not_counted_as_headers(address: Address) -> None:
    """Headers, a body of many header limits and a pipelined request at the limit arrive in the same reads."""
    body = json.dumps(event(padding="p" * (SETTINGS.max_body_bytes - 1024))).encode()
    request = post(body, b"Content-Type: application/json") + head(
        b"/api/healthcheck", HEADER_LIMIT, b"Connection: close"
    )
    responses = await asyncio.to_thread(exchange, address, request)
    assert [status for status, _, _ in responses] == [202, 200]


def send_endless_header(address: Address, header: memoryview) -> None:
    """Send a request whose headers never end; the server may cut it off."""
    with socket.create_connection(address, timeout=10) as sock:
        try:
            sock.sendall(b"GET /api/healthcheck HTTP/1.1\r\nX-Big: ")
            sock.sendall(header)
        except OSError:
            pass


async def test_huge_headers_are_not_buffered(address: Address) -> None:
    header = memoryview(b"h" * (20 * 1024 * 1024))  # allocated before tracing: only the server's memory is measured
    tracemalloc.start()
    try:
        await asyncio.gather(*(asyncio.to_thread(send_endless_header, address, header) for _ in range(4)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(header) // 2


# Early answers: a client that sends its whole body before reading still sees them.


@pytest.mark.parametrize("encode", [post, chunked_post], ids=["content-length", "chunked"])
async def test_a_body_sent_whole_before_reading_gets_its_413(address: Address, encode: Callable[..., bytes]) -> None:
    request = encode(TOO_LARGE_BODY, b"Connection: close")
    results = await asyncio.gather(*(asyncio.to_thread(exchange, address, request) for _ in range(20)))
    for responses in results:
        assert_refused(responses, 413, f"request body exceeds {SETTINGS.max_body_bytes} bytes")


async def test_a_second_request_on_a_keep_alive_connection_gets_its_413(address: Address) -> None:
    request = post(json.dumps(event()).encode()) + post(TOO_LARGE_BODY, b"Connection: close")
    results = await asyncio.gather(*(asyncio.to_thread(exchange, address, request) for _ in range(20)))
    for first, *rest in results:
        assert first[0] == 202
        assert_refused(rest, 413, f"request body exceeds {SETTINGS.max_body_bytes} bytes")


def keep_alive_after_413(address: Address, then: bytes) -> tuple[list[int], float]:
    """A 413 on a keep-alive connection, then `then`; the statuses, and how long the idle connection stayed open."""
    with socket.create_connection(address, timeout=KEEP_ALIVE_S + GRACE_S) as sock, sock.makefile("rb") as stream:
        sock.sendall(post(TOO_LARGE_BODY) + then)
        statuses = [read_response(stream)[0] for _ in range(1 + then.count(b" HTTP/1.1\r\n"))]
        started = time.monotonic()
        assert stream.read() == b""
        return statuses, time.monotonic() - started


@pytest.mark.parametrize(
    ("then", "statuses"), [(b"", [413]), (head(b"/api/healthcheck"), [413, 200])], ids=["idle", "then-served"]
)
async def test_a_drained_keep_alive_connection_serves_on_then_idles_out(
    address: Address, then: bytes, statuses: list[int]
) -> None:
    answered, idle_s = await asyncio.to_thread(keep_alive_after_413, address, then)
    assert answered == statuses
    assert idle_s < KEEP_ALIVE_S + GRACE_S


def send_until_cut_off(address: Address, piece: int, pause_s: float, most: int) -> int:
    """Announce a huge body and send it in pieces without reading; the bytes sent before the server hung up."""
    sent = 0
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head(b"/api/ingestion/event", 0, b"Content-Length: %d" % (1 << 40), method=b"POST"))
        data = b"x" * piece
        try:
            while sent < most:
                sock.sendall(data)
                sent += piece
                time.sleep(pause_s)
        except OSError:
            return sent
    raise AssertionError(f"the server took {sent} bytes of a body it had answered")


async def test_a_client_that_never_stops_sending_is_cut_off_by_the_byte_bound(address: Address) -> None:
    sent = await asyncio.to_thread(send_until_cut_off, address, 1 << 20, 0, 16 * DRAIN_LIMIT_BYTES)
    assert sent < 4 * DRAIN_LIMIT_BYTES


async def test_a_client_that_never_stops_sending_is_cut_off_by_the_time_bound(address: Address) -> None:
    started = time.monotonic()
    await asyncio.to_thread(send_until_cut_off, address, 16 * 1024, 0.1, DRAIN_LIMIT_BYTES)
    assert time.monotonic() - started < DRAIN_TIMEOUT_S + GRACE_S


async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.sleep(1)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


def exchange_until_closed(address: Address, request: bytes) -> bytes:
    """What the server sent before it closed the connection, reset or not."""
    received = b""
    with socket.create_connection(address, timeout=10) as sock:
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionError:
            pass
    return received


@pytest.mark.parametrize(
    "refused", [head(b"/", 1024 * 1024), b"HELLO THERE\r\n\r\n"], ids=["headers too large", "garbage"]
)
async def test_a_refusal_behind_an_answer_still_due_just_closes(refused: bytes) -> None:
    """Writing a 431 or 400 then would garble the answer to the request before: the connection is closed instead."""
    async with serving(slow_app, SETTINGS) as url:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        received = await asyncio.to_thread(exchange_until_closed, (parts.hostname, parts.port), head(b"/") + refused)
    assert received == b""


# What the HTTP parser refuses before the app sees it: JSON like everything else.

MALFORMED = {
    "invalid content-length": post(b"{}").replace(b"Content-Length: 2", b"Content-Length: abc"),
    "duplicate content-length": post(b"{}", b"Content-Length: 3"),
    "content-length and transfer-encoding": post(b"{}", b"Transfer-Encoding: chunked"),
    "garbage request line": b"HELLO THERE\r\n\r\n",
    "tls handshake": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
async def test_what_the_parser_refuses_gets_a_json_400(address: Address, request_bytes: bytes) -> None:
    responses = await asyncio.to_thread(exchange, address, request_bytes)
    assert_refused(responses, 400, "Invalid HTTP request received.")
