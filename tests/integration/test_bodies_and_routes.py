"""Bodies real clients send (a UTF-8 BOM, multi-member gzip) and paths with a trailing slash."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
import redis.asyncio as aioredis

from analytics.queue.keys import QueueKeys
from tests.helpers.factories import event

BOM = b"\xef\xbb\xbf"


def json_bytes(document: object) -> bytes:
    return json.dumps(document).encode()


async def test_a_body_that_starts_with_a_utf8_bom_is_read(
    api: httpx.AsyncClient, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    response = await api.post("/api/ingestion/event", content=BOM + json_bytes(event()))
    assert response.status_code == 202, response.text
    response = await api.post(
        "/api/ingestion/events",
        content=gzip.compress(BOM + json_bytes([event(), event(path="/b")])),
        headers={"content-encoding": "gzip"},
    )
    assert (response.status_code, response.json()) == (202, {"status": "queued", "count": 2})
    assert await redis.llen(keys.queue) == 3


async def test_a_multi_member_gzip_body_is_read_whole(
    api: httpx.AsyncClient, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    text = json_bytes([event(path=f"/{number}") for number in range(3)])
    middle = len(text) // 2
    members = gzip.compress(text[:middle]) + gzip.compress(text[middle:])
    response = await api.post("/api/ingestion/events", content=members, headers={"content-encoding": "gzip"})
    assert (response.status_code, response.json()) == (202, {"status": "queued", "count": 3})
    assert await redis.llen(keys.queue) == 3


async def test_the_body_limit_counts_every_member(
    api: httpx.AsyncClient, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    padding = b" " * (1024 * 1024 - 10)  # one member under the limit, both together over it
    members = gzip.compress(json_bytes(event())[:-1] + b",") + gzip.compress(b'"x": "' + padding + b'"}')
    response = await api.post("/api/ingestion/event", content=members, headers={"content-encoding": "gzip"})
    assert response.status_code == 413
    assert await redis.llen(keys.queue) == 0


async def test_garbage_after_a_gzip_member_is_400(api: httpx.AsyncClient) -> None:
    content = gzip.compress(json_bytes(event())) + b"not gzip"
    response = await api.post("/api/ingestion/event", content=content, headers={"content-encoding": "gzip"})
    assert response.status_code == 400
    assert response.json() == {"status": "fail", "errors": [{"path": "body", "message": "body is not valid gzip"}]}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/ingestion/event/"),
        ("POST", "/api/ingestion/events/"),
        ("GET", "/api/reporting/stats/"),
        ("GET", "/api/healthcheck/"),
    ],
)
async def test_a_trailing_slash_is_a_json_404_never_a_redirect_built_from_host(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await api.request(method, path, json=event(), headers={"host": "evil.example"})
    assert response.status_code == 404
    assert response.json() == {"status": "fail", "message": "Route not found."}
    assert "location" not in response.headers
