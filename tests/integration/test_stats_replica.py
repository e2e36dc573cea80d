"""A read replica for stats (docs/operations.md, "A read replica for stats"): two PostgreSQL servers of the test's own,
a primary and a replica, set up by running that section's shell blocks as they are written; `analytics serve` with
DATABASE_URL on the primary and STATS_DATABASE_URL on the replica reads v1 stats and the site list from the replica,
everything else from the primary.

Not the suite's PostgreSQL: a publisher needs `wal_level = logical`, which takes a restart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from analytics.queue.keys import QueueKeys
from analytics.stats.query import parse_stats_query
from analytics.stats.rollups import site_stats
from analytics.store import queries
from analytics.store.connect import create_pool
from analytics.store.migrations import migrate
from analytics.store.sites import sites_with_data
from tests.helpers.backends import PostgresServer
from tests.helpers.processes import RoleProcess, base_environment
from tests.helpers.waiting import eventually
from tests.integration.test_backup_restore import client_tools

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PUBLICATION = re.compile(r"CREATE PUBLICATION analytics_stats FOR TABLE ([\w, ]+);")
ROLLUPS = ("daily_totals", "daily_path_views", "site_totals", "site_path_views")
SHOP, BLOG, NEWS = "replica-shop", "replica-blog", "replica-news"
FIRST_DAY, SECOND_DAY = "2025-11-12", "2025-11-13"
CATCH_UP_S = 30.0


def guide(heading: str) -> str:
    """The text under a `###` heading of the guide's replica section, up to the next heading."""
    replica = OPERATIONS.read_text().split("\n## A read replica for stats\n", 1)[1].split("\n## ", 1)[0]
    return replica.split(f"\n### {heading}\n", 1)[1].split("\n### ", 1)[0]


def shell_blocks(heading: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", guide(heading), re.MULTILINE | re.DOTALL)


def published_tables() -> set[str]:
    """The tables of the publication the guide has the operator create."""
    found = PUBLICATION.findall(guide("Setting it up"))
    assert len(found) == 1, found
    return {table.strip() for table in found[0].split(",")}


def test_the_replica_is_asked_only_for_published_tables() -> None:
    """What STATS_DATABASE_URL answers (v1 stats: stats.sql; the site list: sites.sql) reads exactly the tables the
    guide publishes: a query of another table would fail on the replica; a table published and never read would be
    replicated for nothing."""
    read: set[str] = set()
    for query in (*queries.STATS.values(), *queries.SITES.values()):
        code = re.sub(r"--[^\n]*", "", query)
        read |= set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", code, re.IGNORECASE))
    assert read == published_tables() == set(ROLLUPS)


def run_block(block: str, environment: dict[str, str]) -> str:
    """A shell block of the guide as an operator's shell runs it (a failing command fails it); its output."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass
class Replicated:
    primary: PostgresServer
    replica: PostgresServer
    operator: dict[str, str]  # an operator's shell: the two URLs, PRIMARY_CONNINFO, the client tools on PATH


@pytest.fixture
async def replicated(tmp_path: Path) -> AsyncIterator[Replicated]:
    """A migrated primary and a replica subscribed to it, set up by the guide's three blocks (the primary restarted
    after the first, as the guide says). Stopped afterwards, the replica first (it connects to the primary)."""
    primary = PostgresServer(tmp_path / "primary")
    try:
        replica = PostgresServer(tmp_path / "replica")
        try:
            migrate(primary.url)
            admin = await asyncpg.connect(primary.url)
            major = int(await admin.fetchval("SHOW server_version_num")) // 10000
            await admin.close()
            tools = client_tools(major)
            operator = {
                **os.environ,
                "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
                "DATABASE_URL": primary.url,
                "STATS_DATABASE_URL": replica.url,
                "PRIMARY_CONNINFO": primary.conninfo("analytics_replication"),
                "ANALYTICS_MIGRATE": "false",
            }
            wal_level, publication, subscription = shell_blocks("Setting it up")
            run_block(wal_level, operator)
            primary.stop()
            primary.start()
            run_block(publication, operator)
            run_block(subscription, operator)
            yield Replicated(primary, replica, operator)
        finally:
            replica.close()
    finally:
        primary.close()


@pytest.fixture
async def service(
    replicated: Replicated, redis_url: str, keys: QueueKeys, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """`analytics serve --role all` (api and writer) on the primary, reading stats from the replica."""
    environment = base_environment(
        DATABASE_URL=replicated.primary.url,
        STATS_DATABASE_URL=replicated.replica.url,
        REDIS_URL=redis_url,
        ANALYTICS_REDIS_PREFIX=keys.prefix,
        ANALYTICS_MIGRATE="false",
        ANALYTICS_FLUSH_INTERVAL_MS="20",
        ANALYTICS_GEOIP_DATABASE="none",
    )
    process = RoleProcess("all", environment, tmp_path).start()
    try:
        await process.healthy()
        async with httpx.AsyncClient(base_url=process.base_url, timeout=10) as client:
            yield client
        assert await process.terminate() == 0, process.log()
    finally:
        process.kill()


def page_views(site: str, day: str, count: int, paths: str = "/p") -> list[dict[str, Any]]:
    """`count` page views of `site` on `day`, over seven users and paths of unequal popularity."""
    return [
        {
            "site_id": site,
            "event_type": "page_view",
            "path": f"{paths}{number % (number % 4 + 1)}",
            "user_id": f"u{number % 7}",
            "timestamp": f"{day}T10:{number // 60:02d}:{number % 60:02d}Z",
        }
        for number in range(count)
    ]


async def send(api: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await api.post("/api/ingestion/events", json=events)
    assert response.status_code == 202, response.text


async def stored(pool: asyncpg.Pool, count: int) -> None:
    """Wait until the writer has stored `count` events on the primary (its rollups with them: one transaction)."""

    async def all_stored() -> None:
        assert await pool.fetchval("SELECT count(*) FROM events") == count

    await eventually(all_stored, CATCH_UP_S)


async def rollups(url: str) -> dict[str, list[tuple[Any, ...]]]:
    connection = await asyncpg.connect(url)
    try:
        return {
            table: [tuple(row) for row in await connection.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3")]
            for table in ROLLUPS
        }
    finally:
        await connection.close()


async def caught_up(replicated: Replicated) -> None:
    """Wait until the replica's four tables hold the primary's rows, exactly."""

    async def same() -> None:
        assert await rollups(replicated.replica.url) == await rollups(replicated.primary.url)

    await eventually(same, CATCH_UP_S)


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def v1(api: httpx.AsyncClient, site: str, day: str | None, token: str | None = None) -> Any:
    """The api's v1 stats (the data of a 200; None for a 404)."""
    params = {"site_id": site} if day is None else {"site_id": site, "date": day}
    response = await api.get("/api/reporting/stats", params=params, headers=bearer(token))
    assert response.status_code in (200, 404), response.text
    return response.json()["data"] if response.status_code == 200 else None


async def on_primary(pool: asyncpg.Pool, site: str, day: str | None) -> Any:
    """What v1 stats answer from the primary's rollups, in the same form."""
    answer = await site_stats(pool, parse_stats_query(site, day))
    return None if answer is None else msgspec.to_builtins(answer)


async def v1_everywhere(api: httpx.AsyncClient) -> dict[tuple[str, str | None], Any]:
    return {
        (site, day): await v1(api, site, day) for site in (SHOP, BLOG, NEWS) for day in (FIRST_DAY, SECOND_DAY, None)
    }


async def primary_everywhere(pool: asyncpg.Pool) -> dict[tuple[str, str | None], Any]:
    return {
        (site, day): await on_primary(pool, site, day)
        for site in (SHOP, BLOG, NEWS)
        for day in (FIRST_DAY, SECOND_DAY, None)
    }


async def pageviews(api: httpx.AsyncClient, site: str, token: str | None = None) -> httpx.Response:
    """v2's aggregate page views of November 2025 (raw events)."""
    params = {"site_id": site, "period": "custom", "from": "2025-11-01", "to": "2025-11-30", "metrics": "pageviews"}
    return await api.get("/api/v2/stats/aggregate", params=params, headers=bearer(token))


async def sites(api: httpx.AsyncClient) -> list[str]:
    response = await api.get("/api/v2/sites")
    assert response.status_code == 200, response.text
    listed: list[str] = response.json()["data"]["sites"]
    return listed


def share(environment: dict[str, str], *args: str) -> str:
    """`analytics share ...` as the operator runs it (both URLs set: it must use the primary's)."""
    done = subprocess.run(
        [sys.executable, "-m", "analytics", "share", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def subscription(replica: asyncpg.Connection, enabled: bool) -> None:
    """`ALTER SUBSCRIPTION ... DISABLE` (or `ENABLE`), and for a disable, wait until its worker has stopped: from then
    on the replica applies nothing (the primary's slot keeps the changes)."""
    await replica.execute(f"ALTER SUBSCRIPTION analytics_stats {'ENABLE' if enabled else 'DISABLE'}")

    async def stopped() -> None:
        query = "SELECT pid FROM pg_stat_subscription WHERE subname = 'analytics_stats' AND relid IS NULL"
        assert await replica.fetchval(query) is None

    if not enabled:
        await eventually(stopped, CATCH_UP_S)


async def test_v1_stats_come_from_the_replica_and_the_rest_from_the_primary(
    replicated: Replicated, service: httpx.AsyncClient
) -> None:
    api = service
    pool = await create_pool(replicated.primary.url, 2)
    replica = await asyncpg.connect(replicated.replica.url)
    try:
        # Events sent over HTTP reach the replica's rollups row for row; v1 stats equal the primary's rollups.
        first = page_views(SHOP, FIRST_DAY, 40) + page_views(SHOP, SECOND_DAY, 25) + page_views(BLOG, FIRST_DAY, 9)
        await send(api, first)
        await stored(pool, len(first))
        await caught_up(replicated)
        primary_before = await primary_everywhere(pool)
        assert primary_before[(SHOP, None)]["total_views"] == 65
        assert await v1_everywhere(api) == primary_before
        assert await sites(api) == [BLOG, SHOP]
        ready = (await api.get("/api/ready")).json()
        assert ready["checks"] == {"redis": "up", "postgresql": "up", "postgresql_stats": "up"}, ready
        lag = run_block(*shell_blocks("Replication lag"), replicated.operator)
        assert re.search(r"analytics_stats\s*\|\s*streaming", lag), lag

        # The replica stops applying: the primary moves on, v1 stats and the site list stay at the replica's state.
        await subscription(replica, enabled=False)
        token = share(replicated.operator, "create", "--site", SHOP).rsplit("/", 1)[1]
        second = page_views(SHOP, SECOND_DAY, 30, paths="/new") + page_views(NEWS, SECOND_DAY, 5)
        await send(api, second)
        await stored(pool, len(first) + len(second))
        primary_after = await primary_everywhere(pool)
        assert primary_after[(SHOP, None)]["total_views"] == 95
        assert primary_after != primary_before
        assert await v1_everywhere(api) == primary_before
        assert await sites(api) == [BLOG, SHOP]
        assert await sites_with_data(pool) == [BLOG, NEWS, SHOP]

        # What reads the primary sees it as it is: v2 reports count every stored event; a share link works, for v1
        # too (looked up on the primary, stats from the replica), and stops the moment it is revoked.
        assert (await pageviews(api, SHOP)).json()["data"]["results"]["pageviews"]["value"] == 95
        assert (await pageviews(api, NEWS)).json()["data"]["results"]["pageviews"]["value"] == 5
        shared = await pageviews(api, SHOP, token)
        assert shared.status_code == 200, shared.text
        assert await v1(api, SHOP, None, token) == primary_before[(SHOP, None)]
        link_id = msgspec.json.decode(share(replicated.operator, "list").splitlines()[-1])["id"]
        share(replicated.operator, "revoke", str(link_id))
        assert (await pageviews(api, SHOP, token)).status_code == 403
        assert (
            await api.get("/api/reporting/stats", params={"site_id": SHOP}, headers=bearer(token))
        ).status_code == 403

        # Applying again, the replica catches up, and so do v1 stats and the site list.
        await subscription(replica, enabled=True)
        await caught_up(replicated)

        async def v1_caught_up() -> None:
            assert await v1_everywhere(api) == primary_after

        await eventually(v1_caught_up, CATCH_UP_S)
        assert await sites(api) == [BLOG, NEWS, SHOP]
    finally:
        await replica.close()
        await pool.close()
