"""Share links: `analytics share create|list|revoke` against a real PostgreSQL, and what a link's token may read over
real HTTP (its own site, every stats endpoint, read-only; nothing once revoked)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from tests.helpers.servers import Client

DAY = "2025-11-12"
REPORTS = ("aggregate", "timeseries", "breakdown", "realtime")


def share(database_url: str, tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # Without --base-url the link is on the service's own HOST and PORT.
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "json",
        "HOST": "127.0.0.1",
        "PORT": "4123",
    }
    return subprocess.run(
        [sys.executable, "-m", "analytics", "share", *args],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def created_token(result: subprocess.CompletedProcess[str], base_url: str = "http://127.0.0.1:4123") -> str:
    link = result.stdout.strip()
    prefix = f"{base_url}/share/"
    assert link.startswith(prefix), link
    return link[len(prefix) :]


async def seed(db: asyncpg.Connection) -> None:
    """Two sites with v1 stats of their own."""
    day = date.fromisoformat(DAY)
    await db.execute(
        "INSERT INTO daily_totals (site_id, day, views, users) VALUES ('shop', $1, 5, 2), ('blog', $1, 9, 4)", day
    )
    await db.execute("INSERT INTO site_totals (site_id, views, users) VALUES ('shop', 5, 2), ('blog', 9, 4)")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_the_cli_creates_lists_and_revokes_links_and_keeps_only_digests(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    created = share(database_url, tmp_path, "create", "--site", "shop")
    token = created_token(created)
    assert token.startswith("share_")
    assert len(token) > 40
    assert "share link 1 for site shop" in created.stderr
    stored = await db.fetchrow("SELECT site_id, token_digest, revoked_at FROM share_links")
    assert stored is not None
    assert (stored["site_id"], stored["token_digest"], stored["revoked_at"]) == (
        "shop",
        hashlib.sha256(token.encode()).digest(),
        None,
    )
    assert token.encode() not in b"".join(str(value).encode() for value in stored.values())
    other = created_token(
        share(database_url, tmp_path, "create", "--site", "blog", "--base-url", "http://x/"), "http://x"
    )
    assert other != token

    [first, second] = [json.loads(line) for line in share(database_url, tmp_path, "list").stdout.splitlines()]
    assert (first["id"], first["site_id"], first["revoked_at"]) == (1, "shop", None)
    assert (second["id"], second["site_id"]) == (2, "blog")
    assert "token" not in first

    revoked = share(database_url, tmp_path, "revoke", "1")
    assert revoked.stdout.startswith("share link 1 of site shop revoked at ")
    audit = [json.loads(line) for line in revoked.stderr.splitlines() if line.startswith("{")]
    assert any("share link 1 of site 'shop' revoked" in entry["msg"] for entry in audit), revoked.stderr
    revoked_at = await db.fetchval("SELECT revoked_at FROM share_links WHERE id = 1")
    assert revoked_at is not None
    again = share(database_url, tmp_path, "revoke", "1")
    assert again.returncode == 0
    assert await db.fetchval("SELECT revoked_at FROM share_links WHERE id = 1") == revoked_at
    missing = share(database_url, tmp_path, "revoke", "99", check=False)
    assert (missing.returncode, missing.stderr.strip().splitlines()[-1]) == (1, "analytics: error: no share link 99")


@pytest.mark.parametrize("site", ["", "x" * 257])
def test_create_refuses_a_site_id_no_event_could_have(database_url: str, tmp_path: Path, site: str) -> None:
    result = share(database_url, tmp_path, "create", "--site", site, check=False)
    assert result.returncode == 2
    assert "a site id is 1 to 256 characters" in result.stderr


def test_create_refuses_a_site_outside_the_configured_sites(database_url: str, tmp_path: Path) -> None:
    environment = {**os.environ, "DATABASE_URL": database_url, "ANALYTICS_SITES": "shop,blog"}
    result = subprocess.run(
        [sys.executable, "-m", "analytics", "share", "create", "--site", "other"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "site 'other' is not one of ANALYTICS_SITES" in result.stderr


async def test_a_link_reads_its_own_site_only_and_nothing_once_revoked(
    client_with: Client, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await seed(db)
    token = created_token(share(database_url, tmp_path, "create", "--site", "shop"))
    async with client_with(api_tokens=("operator",)) as client:
        sites = await client.get("/api/v2/sites", headers=bearer(token))
        assert sites.json() == {"status": "success", "data": {"sites": ["shop"]}}
        v1 = await client.get("/api/reporting/stats", params={"site_id": "shop", "date": DAY}, headers=bearer(token))
        assert (v1.status_code, v1.json()["data"]["total_views"]) == (200, 5)
        for kind in REPORTS:
            params = {"site_id": "shop", "property": "path"}
            own = await client.get(f"/api/v2/stats/{kind}", params=params, headers=bearer(token))
            assert own.status_code == 200, (kind, own.text)
            params["site_id"] = "blog"
            other = await client.get(f"/api/v2/stats/{kind}", params=params, headers=bearer(token))
            assert (other.status_code, other.json()) == (
                403,
                {"status": "fail", "message": "this share link is for another site"},
            ), kind
        blog = await client.get("/api/reporting/stats", params={"site_id": "blog", "date": DAY}, headers=bearer(token))
        assert blog.status_code == 403
        # The operator's token still reads every site.
        operator = await client.get("/api/v2/sites", headers=bearer("operator"))
        assert operator.json()["data"]["sites"] == ["blog", "shop"]

        share(database_url, tmp_path, "revoke", "1")
        for path, params in (("/api/v2/sites", {}), ("/api/v2/stats/aggregate", {"site_id": "shop"})):
            gone = await client.get(path, params=params, headers=bearer(token))
            assert gone.status_code == 403
            assert gone.json() == {"status": "fail", "message": "share link revoked or unknown"}
        made_up = await client.get("/api/v2/sites", headers=bearer("share_" + "A" * 43))
        assert made_up.status_code == 403


async def test_a_link_shows_its_own_site_on_an_open_service_too(
    client_with: Client, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await seed(db)
    token = created_token(share(database_url, tmp_path, "create", "--site", "blog"))
    async with client_with() as client:
        assert (await client.get("/api/v2/sites")).json()["data"]["sites"] == ["blog", "shop"]
        linked = await client.get("/api/v2/sites", headers=bearer(token))
        assert linked.json()["data"]["sites"] == ["blog"]
        other = await client.get("/api/v2/stats/aggregate", params={"site_id": "shop"}, headers=bearer(token))
        assert other.status_code == 403


async def test_a_link_is_503_when_the_database_does_not_answer(
    client_with: Client, database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    token = created_token(share(database_url, tmp_path, "create", "--site", "shop"))
    async with client_with(api_tokens=("operator",)) as client:
        await pool.close()
        response = await client.get("/api/v2/sites", headers=bearer(token))
    assert (response.status_code, response.json()) == (503, {"status": "error", "message": "database unavailable"})
