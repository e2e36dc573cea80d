"""The HTTP contract over a real socket, with real Redis and PostgreSQL behind it."""

from __future__ import annotations

import gzip
import logging
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from analytics.config import Settings
from analytics.observability.metrics import Metrics
from analytics.queue.connection import connect_redis
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import Pusher
from analytics.web.access import AccessRules
from analytics.web.app import App
from analytics.web.ingest import Enrichment, Ingest
from tests.helpers.factories import event
from tests.helpers.servers import api_app, serving
from tests.helpers.waiting import eventually

NO_DATA = {"status": "fail", "message": "No analytics data found for the specified criteria."}


async def post(client: httpx.AsyncClient, document: Any) -> httpx.Response:
    return await client.post("/api/ingestion/event", json=document)


async def stats_of(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await client.get("/api/reporting/stats", params=params)


async def ingest_all(client: httpx.AsyncClient, documents: list[dict[str, Any]]) -> None:
    for document in documents:
        response = await post(client, document)
        assert response.status_code == 202, response.text


async def stored_count(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM events")
    return count


async def settled(db: asyncpg.Connection, expected: int) -> None:
    async def check() -> None:
        assert await stored_count(db) == expected

    await eventually(check)


async def test_healthcheck(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/healthcheck")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": "API is running, healthy, and ready!"}


async def test_accepted_event_is_in_redis_when_202_is_answered(
    api: httpx.AsyncClient, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    response = await post(api, event())
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "queued"}
    assert await redis.llen(keys.queue) == 1


async def test_seed_readme_examples(service: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    """The original service's README, request for request."""
    response = await service.post(
        "/api/ingestion/event",
        headers={"Content-Type": "application/json"},
        content=b"""{
    "site_id": "site-abc-123",
    "event_type": "page_view",
    "path": "/pricing",
    "user_id": "user-xyz-789",
    "timestamp": "2025-11-12T19:30:01Z"
}""",
    )
    assert (response.status_code, response.json()) == (202, {"status": "queued"})
    await settled(db, 1)
    expected = {
        "site_id": "site-abc-123",
        "total_views": 1,
        "unique_users": 1,
        "top_paths": [{"path": "/pricing", "views": 1}],
    }
    day = await stats_of(service, site_id="site-abc-123", date="2025-11-12")
    assert (day.status_code, day.json()) == (200, {"status": "success", "data": {**expected, "date": "2025-11-12"}})
    all_time = await stats_of(service, site_id="site-abc-123")
    assert all_time.json() == {"status": "success", "data": {**expected, "date": "all-time"}}
    missing = await stats_of(service, site_id="site-abc-123", date="2025-11-13")
    assert (missing.status_code, missing.json()) == (404, NO_DATA)
    invalid = await post(service, {k: v for k, v in event().items() if k != "site_id"})
    assert (invalid.status_code, invalid.json()) == (
        400,
        {"status": "fail", "errors": [{"path": "body.site_id", "message": "site_id is required"}]},
    )


async def test_invalid_event_lists_every_problem_and_queues_nothing(
    api: httpx.AsyncClient, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    response = await post(api, {"event_type": "", "timestamp": "2025-13-45T10:00:00Z", "path": 5, "user_id": None})
    assert response.status_code == 400
    assert response.json() == {
        "status": "fail",
        "errors": [
            {"path": "body.site_id", "message": "site_id is required"},
            {"path": "body.event_type", "message": "event_type is required"},
            {"path": "body.path", "message": "path must be a string"},
            {"path": "body.timestamp", "message": "timestamp must be an ISO 8601 date-time, e.g. 2025-11-12T19:30:01Z"},
        ],
    }
    assert await redis.llen(keys.queue) == 0


@pytest.mark.parametrize(
    "content",
    [b"{bad json", b"", b"[1, 2]", b"\xff\xfe\xfd", b"[" * 50_000 + b"]" * 50_000, b'{"site_id": "a\\u0000"}'],
)
async def test_hostile_bodies_get_400_in_the_contract_shape(api: httpx.AsyncClient, content: bytes) -> None:
    response = await api.post("/api/ingestion/event", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    payload = response.json()
    assert payload["status"] == "fail"
    assert payload["errors"]
    assert all(error["path"].startswith("body") and error["message"] for error in payload["errors"])


async def test_body_over_the_limit_is_413(api: httpx.AsyncClient, redis: aioredis.Redis, keys: QueueKeys) -> None:
    oversized = event(padding="x" * (Settings().max_body_bytes + 1))
    response = await post(api, oversized)
    assert response.status_code == 413
    assert response.json() == {"status": "fail", "message": "request body exceeds 1048576 bytes"}
    assert await redis.llen(keys.queue) == 0


async def test_streamed_body_over_the_limit_is_413_without_content_length(api: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 100_000

    response = await api.post("/api/ingestion/event", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["status"] == "fail"


@pytest.mark.parametrize("content_type", ["text/csv", "application/x-www-form-urlencoded", "multipart/form-data"])
async def test_non_json_content_type_is_415(api: httpx.AsyncClient, content_type: str) -> None:
    response = await api.post("/api/ingestion/event", content=b"{}", headers={"content-type": content_type})
    assert response.status_code == 415
    assert response.json() == {"status": "fail", "message": "Content-Type must be application/json or text/plain"}


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/vnd.api+json", "text/plain;charset=UTF-8", "TEXT/PLAIN"],
)
async def test_json_media_types_are_accepted(api: httpx.AsyncClient, content_type: str) -> None:
    content = httpx.Request("POST", "/", json=event()).content
    response = await api.post("/api/ingestion/event", content=content, headers={"content-type": content_type})
    assert response.status_code == 202


async def test_gzip_is_not_silently_misread(api: httpx.AsyncClient) -> None:
    content = gzip.compress(httpx.Request("POST", "/", json=event()).content)
    response = await api.post("/api/ingestion/event", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400


async def test_unknown_route_is_json_404(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"status": "fail", "message": "Route not found."}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/ingestion/event"), ("DELETE", "/api/reporting/stats"), ("POST", "/api/healthcheck")],
)
async def test_wrong_method_is_json_405(api: httpx.AsyncClient, method: str, path: str) -> None:
    response = await api.request(method, path)
    assert response.status_code == 405
    assert response.json() == {"status": "fail", "message": "Method Not Allowed"}
    assert "allow" in response.headers


async def test_unexpected_fault_is_json_500_with_details_only_in_the_log(
    pusher: Pusher, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    app = api_app(pusher, pool, Metrics(), Settings(max_body_bytes=1024))

    async def broken(request: Any) -> Any:
        raise RuntimeError("secret detail")

    app.starlette.add_route("/api/broken", broken)
    with caplog.at_level(logging.ERROR, logger="analytics.web.faults"):
        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            response = await client.get("/api/broken")
            traced = await client.get("/api/broken", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.json() == {"status": "error", "message": "Internal Server Error"}
    assert "secret detail" not in response.text
    assert "secret detail" in caplog.text
    request_id = response.headers["x-request-id"]
    logged = [entry for entry in caplog.records if entry.name == "analytics.web.faults"]
    assert [entry.request_id for entry in logged] == [request_id, "req-42"]  # type: ignore[attr-defined]
    assert traced.headers["x-request-id"] == "req-42"


async def test_redis_unreachable_is_503_never_202(pool: asyncpg.Pool, keys: QueueKeys) -> None:
    unreachable = connect_redis("redis://127.0.0.1:1/0")
    try:
        app = api_app(Pusher(unreachable, keys, 1000), pool, Metrics(), Settings(max_body_bytes=1024))
        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            response = await post(client, event())
    finally:
        await unreachable.aclose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {"status": "error", "message": "queue unavailable"}


async def test_full_queue_is_503(pool: asyncpg.Pool, redis: aioredis.Redis, keys: QueueKeys) -> None:
    app = api_app(Pusher(redis, keys, max_length=2), pool, Metrics(), Settings(max_body_bytes=1024))
    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        statuses = [(await post(client, event(user_id=str(n)))).status_code for n in range(4)]
        refused = await post(client, event())
    assert statuses == [202, 202, 503, 503]
    assert refused.json() == {"status": "error", "message": "queue is full, retry later"}
    assert refused.headers["retry-after"] == "1"
    assert await redis.llen(keys.queue) == 2


async def test_stats_while_postgres_is_unreachable_is_503(pusher: Pusher) -> None:
    from analytics.store.connect import create_pool

    nowhere = await create_pool("postgresql://postgres@127.0.0.1:1/none", 1)
    try:
        app = api_app(pusher, nowhere, Metrics(), Settings(max_body_bytes=1024))
        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as c:
            response = await stats_of(c, site_id="s")
    finally:
        await nowhere.close()
    assert response.status_code == 503
    assert response.json() == {"status": "error", "message": "database unavailable"}


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({}, [{"path": "query.site_id", "message": "site_id is required"}]),
        ({"site_id": ""}, [{"path": "query.site_id", "message": "site_id is required"}]),
        (
            {"site_id": "s", "date": "2025-13-45"},
            [{"path": "query.date", "message": "date must be a real calendar date in YYYY-MM-DD format"}],
        ),
    ],
)
async def test_bad_stats_queries_are_400(api: httpx.AsyncClient, params: dict[str, str], errors: Any) -> None:
    response = await stats_of(api, **params)
    assert response.status_code == 400
    assert response.json() == {"status": "fail", "errors": errors}


async def test_stats_for_an_unknown_site_is_404(api: httpx.AsyncClient) -> None:
    response = await stats_of(api, site_id="never-seen")
    assert (response.status_code, response.json()) == (404, NO_DATA)


async def test_a_utc_day_is_midnight_to_midnight_utc_whatever_the_offset(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await ingest_all(
        service,
        [
            event(path="/late", timestamp="2025-11-12T23:59:59.999999Z"),
            event(path="/early", timestamp="2025-11-13T01:30:00+02:00"),  # 2025-11-12T23:30Z
            event(path="/next", timestamp="2025-11-12T19:00:00-05:00"),  # 2025-11-13T00:00Z
            event(path="/naive", timestamp="2025-11-12T00:00:00"),  # naive is UTC
            event(path="/before", timestamp="2025-11-12T00:30:00+01:00"),  # 2025-11-11T23:30Z
        ],
    )
    await settled(db, 5)
    day = (await stats_of(service, site_id="site-abc-123", date="2025-11-12")).json()["data"]
    assert day["total_views"] == 3
    assert sorted(path["path"] for path in day["top_paths"]) == ["/early", "/late", "/naive"]
    next_day = (await stats_of(service, site_id="site-abc-123", date="2025-11-13")).json()["data"]
    assert [path["path"] for path in next_day["top_paths"]] == ["/next"]
    previous_day = (await stats_of(service, site_id="site-abc-123", date="2025-11-11")).json()["data"]
    assert [path["path"] for path in previous_day["top_paths"]] == ["/before"]


async def test_duplicates_are_stored_once_including_anonymous_and_pathless(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    named = event()
    anonymous = event(user_id=None)
    pathless = event(path=None, user_id=None)
    same_instant_other_offset = event(timestamp="2025-11-12T21:30:01+02:00")
    await ingest_all(service, [named, named, anonymous, anonymous, pathless, pathless, same_instant_other_offset])
    await settled(db, 3)
    data = (await stats_of(service, site_id="site-abc-123")).json()["data"]
    assert data["total_views"] == 3
    assert data["unique_users"] == 1
    assert data["top_paths"] == [{"path": "/pricing", "views": 2}]


async def test_page_view_and_click_at_the_same_instant_are_both_stored(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await ingest_all(service, [event(event_type="page_view"), event(event_type="click")])
    await settled(db, 2)
    data = (await stats_of(service, site_id="site-abc-123")).json()["data"]
    assert data["total_views"] == 1, "only page views count"


async def test_only_page_views_are_counted(service: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await ingest_all(service, [event(event_type="click"), event(event_type="signup", path="/x")])
    await settled(db, 2)
    response = await stats_of(service, site_id="site-abc-123")
    assert (response.status_code, response.json()) == (404, NO_DATA)


async def test_null_users_are_not_a_user_and_null_paths_are_not_a_path(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await ingest_all(
        service,
        [
            event(user_id=None, path=None, timestamp="2025-11-12T10:00:00Z"),
            event(user_id=None, path=None, timestamp="2025-11-12T10:00:01Z"),
            event(user_id=None, path="/a", timestamp="2025-11-12T10:00:02Z"),
            event(user_id="u1", path="/a", timestamp="2025-11-12T10:00:03Z"),
        ],
    )
    await settled(db, 4)
    data = (await stats_of(service, site_id="site-abc-123", date="2025-11-12")).json()["data"]
    assert data == {
        "site_id": "site-abc-123",
        "date": "2025-11-12",
        "total_views": 4,
        "unique_users": 1,
        "top_paths": [{"path": "/a", "views": 2}],
    }


async def test_top_paths_are_three_most_viewed_ties_by_code_point(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    views = {"/b": 2, "/a": 2, "/Z": 2, "/é": 2, "/most": 3, "/least": 1}
    documents = [
        event(path=path, user_id=None, timestamp=f"2025-11-12T10:00:{second:02d}Z")
        for path, count in views.items()
        for second in range(count)
    ]
    await ingest_all(service, documents)
    await settled(db, len(documents))
    data = (await stats_of(service, site_id="site-abc-123")).json()["data"]
    # "/Z" < "/a" < "/b" < "/é" by code point (a linguistic collation would put "/a" first).
    assert data["top_paths"] == [{"path": "/most", "views": 3}, {"path": "/Z", "views": 2}, {"path": "/a", "views": 2}]


async def test_sites_do_not_see_each_other(service: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await ingest_all(service, [event(site_id="one"), event(site_id="two"), event(site_id="two", user_id="other")])
    await settled(db, 3)
    one = (await stats_of(service, site_id="one")).json()["data"]
    two = (await stats_of(service, site_id="two")).json()["data"]
    assert (one["total_views"], two["total_views"], two["unique_users"]) == (1, 2, 2)


async def test_unknown_fields_are_ignored_end_to_end(service: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await ingest_all(service, [event(referrer="https://example.com", screen={"w": 1920})])
    await settled(db, 1)
    row = await db.fetchrow("SELECT site_id, event_type, path, user_id FROM events")
    assert tuple(row) == ("site-abc-123", "page_view", "/pricing", "user-xyz-789")


async def test_contract_maximum_lengths_in_multibyte_text_are_stored(
    service: httpx.AsyncClient, db: asyncpg.Connection, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    huge = event(site_id="站" * 256, path="路" * 2048, user_id="用" * 256)
    huge_type = {**huge, "event_type": "事" * 64}
    await ingest_all(service, [huge, huge, huge_type, huge_type])
    await settled(db, 2)
    assert await redis.llen(keys.dead) == 0
    data = (await stats_of(service, site_id="站" * 256)).json()["data"]
    assert data["top_paths"] == [{"path": "路" * 2048, "views": 1}]


async def test_timestamps_are_stored_exactly_in_utc(service: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await ingest_all(
        service,
        [event(timestamp="2025-11-12T21:30:01.123456+02:00"), event(timestamp="1970-01-01T00:00:00Z", path="/old")],
    )
    await settled(db, 2)
    rows = await db.fetch(
        """SELECT to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS utc FROM events ORDER BY 1"""
    )
    assert [row["utc"] for row in rows] == ["1970-01-01T00:00:00.000000", "2025-11-12T19:30:01.123456"]


async def test_batch_of_valid_events_is_queued_with_its_count(
    service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    events = [event(user_id=f"u{n}", timestamp=f"2025-11-12T10:00:{n:02d}Z") for n in range(50)]
    response = await service.post("/api/ingestion/events", json=events)
    assert (response.status_code, response.json()) == (202, {"status": "queued", "count": 50})
    await settled(db, 50)
    data = (await stats_of(service, site_id="site-abc-123", date="2025-11-12")).json()["data"]
    assert (data["total_views"], data["unique_users"]) == (50, 50)


async def test_batch_with_one_invalid_event_queues_nothing(
    api: httpx.AsyncClient, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    events = [event(), event(site_id=""), event(), event(timestamp="2025-02-30T00:00:00Z")]
    response = await api.post("/api/ingestion/events", json=events)
    assert response.status_code == 400
    assert response.json() == {
        "status": "fail",
        "errors": [
            {"path": "body.1.site_id", "message": "site_id is required"},
            {
                "path": "body.3.timestamp",
                "message": "timestamp must be an ISO 8601 date-time, e.g. 2025-11-12T19:30:01Z",
            },
        ],
    }
    assert await redis.llen(keys.queue) == 0


async def test_batch_over_the_event_limit_is_400(
    api: httpx.AsyncClient, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    response = await api.post("/api/ingestion/events", json=[event()] * 1001)
    assert response.status_code == 400
    assert response.json() == {
        "status": "fail",
        "errors": [{"path": "body", "message": "body may hold at most 1000 events, got 1001"}],
    }
    assert await redis.llen(keys.queue) == 0


async def test_batch_body_limit_and_content_type_apply(api: httpx.AsyncClient) -> None:
    too_large = await api.post("/api/ingestion/events", json=[event(padding="x" * 1_100_000)])
    assert too_large.status_code == 413
    wrong_type = await api.post("/api/ingestion/events", content=b"[]", headers={"content-type": "text/csv"})
    assert wrong_type.status_code == 415


async def test_batch_with_redis_unreachable_is_503(pool: asyncpg.Pool, keys: QueueKeys) -> None:
    unreachable = connect_redis("redis://127.0.0.1:1/0")
    try:
        app = api_app(Pusher(unreachable, keys, 1000), pool, Metrics())
        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            response = await client.post("/api/ingestion/events", json=[event(), event(user_id="b")])
    finally:
        await unreachable.aclose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


async def test_fault_on_the_fast_ingest_path_is_json_500_too(
    pusher: Pusher, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(body: bytes, received_us: int) -> list[Any]:
        raise RuntimeError("decoder bug")

    app = api_app(pusher, pool, Metrics())
    enrichment = Enrichment.from_settings(Settings(), pusher.client, pusher.keys)
    ingest = Ingest(pusher, Metrics(), 1024, AccessRules(), enrichment, explode, lambda n: b"")
    broken = App(app.starlette, {"/api/ingestion/event": ingest}, {})
    with caplog.at_level(logging.ERROR, logger="analytics.web.faults"):
        async with serving(broken) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            response = await post(client, event())
    assert response.status_code == 500
    assert response.json() == {"status": "error", "message": "Internal Server Error"}
    assert "decoder bug" in caplog.text
    assert "decoder bug" not in response.text
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("path", ["/api/ingestion/event", "/api/ingestion/events"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_on_the_fast_paths_are_json_405(api: httpx.AsyncClient, path: str, method: str) -> None:
    response = await api.request(method, path)
    assert response.status_code == 405
    assert response.json() == {"status": "fail", "message": "Method Not Allowed"}
