"""Clients that send a byte a second are cut off at the configured deadlines, and others are served meanwhile."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from analytics.config import Settings
from analytics.observability.metrics import Metrics
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import Pusher
from tests.helpers.factories import event
from tests.helpers.servers import api_app, serving

DEADLINE_S = 1.5
# How long past its deadline a connection may stay open: timer granularity and a loaded 2-core machine.
GRACE_S = 3.0


@pytest.fixture
async def base_url(pusher: Pusher, pool: asyncpg.Pool) -> AsyncIterator[str]:
    settings = Settings(header_timeout_s=DEADLINE_S, body_timeout_s=DEADLINE_S)
    async with serving(api_app(pusher, pool, Metrics(), settings), settings) as url:
        yield url


async def trickle(base_url: str, request: bytes, *, burst: int = 0) -> tuple[bytes, float]:
    """Send `burst` bytes at once, then one byte a second until the server hangs up; its answer and the time taken."""
    address = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        writer.write(request[:burst])
        for position in range(burst, len(request)):
            writer.write(request[position : position + 1])
            try:
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(), timeout=1.0)
            except TimeoutError:
                continue
            except ConnectionError:
                answer = b""
            return answer, loop.time() - started
        raise AssertionError("the server read the whole trickled request")
    finally:
        writer.close()


async def test_slow_headers_get_408_and_the_connection_closes(base_url: str) -> None:
    request = b"POST /api/ingestion/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" * 3
    answer, elapsed = await trickle(base_url, request)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
        "status": "fail",
        "message": "request not received in time",
    }
    assert DEADLINE_S <= elapsed < DEADLINE_S + GRACE_S


async def test_slow_body_is_cut_off_and_nothing_is_queued(
    base_url: str, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    payload = json.dumps(event()).encode()
    head = (
        b"POST /api/ingestion/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(payload)
    )
    answer, elapsed = await trickle(base_url, head + payload, burst=len(head))
    assert answer == b""  # a handler was reading: the connection is closed, no answer is owed
    assert DEADLINE_S <= elapsed < DEADLINE_S + GRACE_S
    assert await redis.llen(keys.queue) == 0


async def test_a_silent_connection_is_closed(base_url: str) -> None:
    address = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=DEADLINE_S + GRACE_S)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_others_are_served_while_slow_clients_wait(base_url: str) -> None:
    request = b"GET /api/healthcheck HTTP/1.1\r\nHost: x\r\n" * 4
    slow = [asyncio.create_task(trickle(base_url, request)) for _ in range(20)]
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        await asyncio.sleep(0.5)
        quick = await client.post("/api/ingestion/event", json=event())
    answers = await asyncio.gather(*slow)
    assert quick.status_code == 202
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer, _ in answers)


async def test_keep_alive_requests_each_get_a_fresh_deadline(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        first = await client.get("/api/healthcheck")
        await asyncio.sleep(DEADLINE_S + 0.5)  # idle, but under uvicorn's 5 s keep-alive
        second = await client.get("/api/healthcheck")
    assert (first.status_code, second.status_code) == (200, 200)
