"""What browsers send and what an exposed endpoint needs, over real HTTP: bodies, gzip, CORS, tokens, sites, limits."""

from __future__ import annotations

import gzip
import json
import logging
import tracemalloc
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from analytics.config import Settings
from analytics.queue.keys import QueueKeys
from analytics.web.access import AccessRules
from tests.helpers.factories import event
from tests.helpers.servers import Client

ORIGIN = "https://shop.example"


def body(*events: dict[str, Any]) -> bytes:
    return json.dumps(events[0] if len(events) == 1 else list(events)).encode()


# Bodies browsers send


async def test_send_beacon_text_plain_body_is_queued(
    api: httpx.AsyncClient, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    headers = {"content-type": "text/plain;charset=UTF-8", "origin": ORIGIN}
    response = await api.post("/api/ingestion/event", content=body(event()), headers=headers)
    assert response.status_code == 202
    assert response.headers["access-control-allow-origin"] == "*"
    assert await redis.llen(keys.queue) == 1


async def test_gzip_bodies_are_inflated(api: httpx.AsyncClient, redis: aioredis.Redis, keys: QueueKeys) -> None:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    single = await api.post("/api/ingestion/event", content=gzip.compress(body(event())), headers=headers)
    batch = [event(user_id=str(n)) for n in range(3)]
    several = await api.post("/api/ingestion/events", content=gzip.compress(body(*batch)), headers=headers)
    assert single.status_code == 202
    assert several.json() == {"status": "queued", "count": 3}
    assert await redis.llen(keys.queue) == 4


async def test_gzip_bomb_is_413_without_inflating_it(
    client_with: Client, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    limit = 256 * 1024
    bomb = gzip.compress(b"[" + b" " * (100 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < limit  # passes the raw-size check: only the inflated size can refuse it
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    async with client_with(max_body_bytes=limit) as client:
        tracemalloc.start()
        try:
            response = await client.post("/api/ingestion/events", content=bomb, headers=headers)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 413
    assert response.json() == {"status": "fail", "message": f"request body exceeds {limit} bytes"}
    assert peak < 20 * limit + 4 * 1024 * 1024  # the 100 MB expansion never happened
    assert await redis.llen(keys.queue) == 0


@pytest.mark.parametrize(
    "content",
    [b"not gzip at all", gzip.compress(body(event()))[:-8], gzip.compress(body(event())) + b"trailing"],
    ids=["garbage", "truncated", "trailing-bytes"],
)
async def test_broken_gzip_is_400(api: httpx.AsyncClient, content: bytes) -> None:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    response = await api.post("/api/ingestion/event", content=content, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"status": "fail", "errors": [{"path": "body", "message": "body is not valid gzip"}]}


async def test_other_content_encodings_are_415(api: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json", "content-encoding": "br"}
    response = await api.post("/api/ingestion/event", content=body(event()), headers=headers)
    assert response.status_code == 415
    assert response.json() == {"status": "fail", "message": "Content-Encoding must be gzip or identity"}


# CORS


async def test_preflight_is_answered_for_ingestion(api: httpx.AsyncClient) -> None:
    headers = {"origin": ORIGIN, "access-control-request-method": "POST"}
    for path in ("/api/ingestion/event", "/api/ingestion/events"):
        response = await api.options(path, headers={**headers, "access-control-request-headers": "content-type"})
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["access-control-allow-methods"] == "POST"
        assert "content-type" in response.headers["access-control-allow-headers"]
        assert response.headers["access-control-max-age"] == "86400"


async def test_listed_origins_are_echoed_and_others_refused(
    client_with: Client, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    async with client_with(cors_origins=(ORIGIN, "https://other.example")) as client:
        allowed = await client.post("/api/ingestion/event", content=body(event()), headers={"origin": ORIGIN})
        refused = await client.post(
            "/api/ingestion/event", content=body(event(user_id="x")), headers={"origin": "https://evil.example"}
        )
        preflight = await client.options(
            "/api/ingestion/event", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
        )
        no_origin = await client.post("/api/ingestion/event", content=body(event(user_id="y")))
    assert allowed.status_code == 202
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert allowed.headers["vary"] == "origin"
    assert refused.status_code == 403
    assert refused.json() == {"status": "fail", "message": "origin not allowed"}
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    assert no_origin.status_code == 202
    assert await redis.llen(keys.queue) == 2


async def test_stats_follow_their_own_cors_setting(client_with: Client) -> None:
    query = "/api/reporting/stats?site_id=nobody"
    async with client_with() as closed:
        refused = await closed.get(query, headers={"origin": ORIGIN})
    async with client_with(stats_cors_origins=(ORIGIN,)) as opened:
        allowed = await opened.get(query, headers={"origin": ORIGIN})
        preflight = await opened.options(
            "/api/reporting/stats",
            headers={
                "origin": ORIGIN,
                "access-control-request-method": "GET",
                "access-control-request-headers": "authorization",
            },
        )
    assert refused.status_code == 403
    assert allowed.status_code == 404
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-methods"] == "GET"
    assert preflight.headers["access-control-allow-headers"] == "authorization"


# Tokens and sites


async def test_stats_need_a_bearer_token_when_tokens_are_set(client_with: Client, db: asyncpg.Connection) -> None:
    await db.execute("INSERT INTO site_totals (site_id, views, users) VALUES ('known', 5, 2)")
    query = "/api/reporting/stats?site_id=nobody"
    async with client_with(api_tokens=("first-token", "second-token")) as client:
        found = await client.get("/api/reporting/stats?site_id=known", headers={"authorization": "Bearer first-token"})
        missing = await client.get(query)
        not_bearer = await client.get(query, headers={"authorization": "Basic Zmlyc3QtdG9rZW4="})
        wrong = await client.get(query, headers={"authorization": "Bearer first-tokeN"})
        prefix = await client.get(query, headers={"authorization": "Bearer first"})
        first = await client.get(query, headers={"authorization": "Bearer first-token"})
        second = await client.get(query, headers={"authorization": "bearer second-token"})
        ingest = await client.post("/api/ingestion/event", content=body(event()))
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {"status": "fail", "message": "Authorization: Bearer <token> required"}
    assert not_bearer.status_code == 401
    assert wrong.status_code == 403
    assert wrong.json() == {"status": "fail", "message": "token not accepted"}
    assert prefix.status_code == 403
    assert first.status_code == 404  # through to the query: no data for this site
    assert second.status_code == 404
    assert ingest.status_code == 202  # ingestion needs no token
    assert found.status_code == 200
    assert found.json()["data"]["total_views"] == 5


def test_open_settings_are_announced_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="analytics.web.access"):
        AccessRules.from_settings(Settings()).warn_if_open()
        AccessRules.from_settings(Settings(api_tokens=("t",), sites=("s",))).warn_if_open()
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [
        "stats API open to anyone",
        "ingestion accepts any site_id",
    ]


async def test_unknown_sites_are_403_and_nothing_is_queued(
    client_with: Client, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    async with client_with(sites=("site-abc-123", "site-def-456")) as client:
        known = await client.post("/api/ingestion/event", content=body(event()))
        unknown = await client.post("/api/ingestion/event", content=body(event(site_id="intruder")))
        mixed = await client.post(
            "/api/ingestion/events", content=body(event(site_id="site-def-456"), event(site_id="intruder"))
        )
    assert known.status_code == 202
    assert unknown.status_code == 403
    assert unknown.json() == {"status": "fail", "message": "site_id not accepted here: intruder"}
    assert mixed.status_code == 403
    assert await redis.llen(keys.queue) == 1


# Rate limits


async def test_client_rate_limit_is_429_with_retry_after(
    client_with: Client, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    async with client_with(rate_limit_ip=0.5, rate_limit_ip_burst=2) as client:
        statuses = []
        for n in range(3):
            # A forwarded-for header is not trusted unless configured: it cannot buy a fresh bucket.
            headers = {"x-forwarded-for": f"10.0.0.{n}"}
            response = await client.post("/api/ingestion/event", content=body(event(user_id=str(n))), headers=headers)
            statuses.append(response.status_code)
        metrics = await client.get("/metrics")
    assert statuses == [202, 202, 429]
    assert response.headers["retry-after"] == "2"
    assert response.json() == {"status": "fail", "message": "too many requests from this client"}
    assert 'analytics_requests_rejected_total{reason="rate_limited"} 1.0' in metrics.text
    assert await redis.llen(keys.queue) == 2


async def test_trusted_proxy_header_keys_the_client_limit(client_with: Client) -> None:
    settings = {"rate_limit_ip": 0.5, "rate_limit_ip_burst": 1, "trusted_proxy_header": "x-forwarded-for"}
    async with client_with(**settings) as client:

        async def post_as(address: str, user: str) -> int:
            headers = {"x-forwarded-for": f"203.0.113.9, {address}"}
            response = await client.post("/api/ingestion/event", content=body(event(user_id=user)), headers=headers)
            return response.status_code

        statuses = [await post_as("198.51.100.1", "a"), await post_as("198.51.100.2", "b")]
        statuses.append(await post_as("198.51.100.1", "c"))
    assert statuses == [202, 202, 429]


async def test_site_rate_limit_counts_events(client_with: Client, redis: aioredis.Redis, keys: QueueKeys) -> None:
    async with client_with(rate_limit_site=0.1, rate_limit_site_burst=3) as client:

        async def batch(site: str, size: int) -> httpx.Response:
            events = [event(site_id=site, user_id=f"{site}-{n}") for n in range(size)]
            return await client.post("/api/ingestion/events", content=json.dumps(events).encode())

        first = await batch("busy", 2)
        second = await batch("busy", 2)
        other = await batch("quiet", 3)
        single = await client.post("/api/ingestion/event", content=body(event(site_id="busy", user_id="last")))
    assert first.status_code == 202
    assert second.status_code == 429
    assert second.json() == {"status": "fail", "message": "too many events for site_id busy"}
    assert int(second.headers["retry-after"]) == 10
    assert other.status_code == 202
    assert single.status_code == 202  # the one token left after the first batch
    assert await redis.llen(keys.queue) == 6


# OpenAPI


async def test_openapi_document_describes_the_contract(client_with: Client) -> None:
    async with client_with(max_batch_events=50) as client:
        response = await client.get("/api/openapi.json")
    document = response.json()
    assert response.status_code == 200
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    assert set(paths) == {
        "/api/ingestion/event",
        "/api/ingestion/events",
        "/api/event",
        "/api/reporting/stats",
        "/api/v2/stats/aggregate",
        "/api/v2/stats/timeseries",
        "/api/v2/stats/breakdown",
        "/api/v2/stats/realtime",
        "/api/v2/sites",
        "/api/healthcheck",
        "/api/ready",
    }
    single = paths["/api/ingestion/event"]["post"]
    assert set(single["responses"]) == {"202", "400", "403", "413", "415", "429", "431", "503"}
    schemas = document["components"]["schemas"]
    event_schema = schemas["EventIn"]
    assert set(event_schema["required"]) == {"site_id", "event_type", "timestamp"}
    assert event_schema["properties"]["site_id"]["maxLength"] == 256
    assert event_schema["properties"]["timestamp"]["format"] == "date-time"
    v2 = event_schema["properties"]
    assert set(v2) >= {"event_id", "sent_at", "url", "referrer", "props", "user_agent", "ip"}
    assert v2["event_id"]["anyOf"][0] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 128,
        "pattern": "^[^\\u0000]*$",
    }
    assert v2["props"]["anyOf"][0]["maxProperties"] == 30
    assert set(schemas["PlausibleEvent"]["properties"]) >= {"name", "n", "url", "u", "domain", "d", "props", "p"}
    batch_schema = paths["/api/ingestion/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert (batch_schema["minItems"], batch_schema["maxItems"]) == (1, 50)
    assert "security" not in paths["/api/reporting/stats"]["get"]


async def test_openapi_declares_bearer_auth_when_tokens_are_set(client_with: Client) -> None:
    async with client_with(api_tokens=("t",)) as client:
        document = (await client.get("/api/openapi.json")).json()
    stats = document["paths"]["/api/reporting/stats"]["get"]
    assert stats["security"] == [{"bearer": []}]
    for kind in ("aggregate", "timeseries", "breakdown", "realtime"):
        report = document["paths"][f"/api/v2/stats/{kind}"]["get"]
        assert report["security"] == [{"bearer": []}]
        assert set(report["responses"]) == {"200", "400", "401", "403", "503"}
    assert set(stats["responses"]) >= {"401", "403"}
    sites = document["paths"]["/api/v2/sites"]["get"]
    assert sites["security"] == [{"bearer": []}]
    assert set(sites["responses"]) == {"200", "401", "403", "503"}
    assert document["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
