"""`GET /api/v2/sites`, the dashboard's site picker, over real HTTP: the configured sites, else those with data."""

from __future__ import annotations

import asyncpg

from tests.helpers.servers import Client


async def test_sites_with_page_views_in_code_point_order(client_with: Client, db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO site_totals (site_id, views, users) VALUES ('b-site', 3, 1), ('B-site', 1, 0), ('a/site', 7, 2),"
        " ('no-views', 0, 0)"
    )
    async with client_with() as client:
        response = await client.get("/api/v2/sites")
    assert response.status_code == 200
    assert response.json() == {"status": "success", "data": {"sites": ["B-site", "a/site", "b-site"]}}


async def test_no_data_is_an_empty_list(client_with: Client) -> None:
    async with client_with() as client:
        response = await client.get("/api/v2/sites")
    assert response.json() == {"status": "success", "data": {"sites": []}}


async def test_configured_sites_are_listed_with_or_without_data(client_with: Client, db: asyncpg.Connection) -> None:
    await db.execute("INSERT INTO site_totals (site_id, views, users) VALUES ('unlisted', 3, 1)")
    async with client_with(sites=("shop", "blog")) as client:
        response = await client.get("/api/v2/sites")
    assert response.json()["data"] == {"sites": ["blog", "shop"]}


async def test_sites_need_the_stats_token_and_follow_the_stats_cors(client_with: Client) -> None:
    async with client_with(api_tokens=("right",), stats_cors_origins=("https://admin.example",)) as client:
        missing = await client.get("/api/v2/sites")
        wrong = await client.get("/api/v2/sites", headers={"authorization": "Bearer wrong"})
        right = await client.get("/api/v2/sites", headers={"authorization": "Bearer right"})
        allowed = await client.get(
            "/api/v2/sites", headers={"authorization": "Bearer right", "origin": "https://admin.example"}
        )
        refused = await client.get(
            "/api/v2/sites", headers={"authorization": "Bearer right", "origin": "https://x.example"}
        )
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")
    assert wrong.json() == {"status": "fail", "message": "token not accepted"}
    assert wrong.status_code == 403
    assert right.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://admin.example"
    assert refused.status_code == 403


async def test_sites_are_503_when_the_database_does_not_answer(client_with: Client, pool: asyncpg.Pool) -> None:
    async with client_with() as client:
        await pool.close()
        response = await client.get("/api/v2/sites")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "message": "database unavailable"}
