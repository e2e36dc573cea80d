"""Real servers for the suite: PostgreSQL and Redis/Valkey from TEST_DATABASE_URL / TEST_REDIS_URL, or embedded.

Isolation: every test gets its own database, cloned from a migrated template (milliseconds), and its own Redis key
prefix, so tests never see each other's rows or queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from starlette.types import ASGIApp

from analytics.access import AccessRules
from analytics.config import Settings
from analytics.db import create_pool, migrate, ping_database
from analytics.embedded import embedded_postgres, embedded_valkey
from analytics.http import App, Ingestion, Readiness, create_app
from analytics.metrics import Metrics
from analytics.queue import Pusher, QueueKeys, WriterQueue, connect_redis, ping, snapshot
from analytics.server import Server, server_config
from analytics.writer import Writer, new_writer_id

T = TypeVar("T")


def with_database(url: str, name: str) -> str:
    """The same server, another database: works for host:port URLs and socket-directory URLs alike."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def backend_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("backends")


@pytest.fixture(scope="session")
def postgres_url(backend_dir: Path) -> Iterator[str]:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with embedded_postgres(backend_dir) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(backend_dir: Path) -> Iterator[str]:
    configured = os.environ.get("TEST_REDIS_URL")
    if configured:
        yield configured
        return
    with embedded_valkey(backend_dir) as url:
        yield url


@pytest.fixture(scope="session")
async def template_database(postgres_url: str) -> AsyncIterator[str]:
    name = f"analytics_template_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        migrate(with_database(postgres_url, name))
        yield name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def cloned_database(postgres_url: str, template_database: str, purpose: str = "test") -> AsyncIterator[str]:
    """A database of its own, cloned from the migrated template in milliseconds, dropped afterwards."""
    name = f"analytics_{purpose}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        yield with_database(postgres_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    async with cloned_database(postgres_url, template_database) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def keys(redis: aioredis.Redis) -> AsyncIterator[QueueKeys]:
    queue_keys = QueueKeys(f"test-{secrets.token_hex(6)}")
    yield queue_keys
    leftovers = [key async for key in redis.scan_iter(match=f"{{{queue_keys.prefix}}}:*")]
    if leftovers:
        await redis.delete(*leftovers)


@pytest.fixture
def settings() -> Settings:
    """Small, fast settings for in-process roles."""
    return Settings(batch_size=500, flush_interval_ms=10, heartbeat_ttl_s=2, db_pool_size=4)


@pytest.fixture
def writer_queue(redis: aioredis.Redis, keys: QueueKeys, settings: Settings) -> WriterQueue:
    return WriterQueue(redis, keys, new_writer_id(), settings.heartbeat_ttl_s)


@pytest.fixture
async def writer(settings: Settings, database_url: str, writer_queue: WriterQueue) -> AsyncIterator[Writer]:
    """A writer running in the test's event loop against the test's database and keys."""
    running = Writer(settings, database_url, writer_queue, Metrics())
    task = asyncio.create_task(running.run())
    yield running
    running.stop()
    await asyncio.wait_for(task, 10)


def api_app(pusher: Pusher, pool: asyncpg.Pool, metrics: Metrics, settings: Settings | None = None) -> App:
    """The api role's app, as `analytics serve --role api` wires it, around the given pusher and pool."""
    settings = settings or Settings()
    redis, keys = pusher.client, pusher.keys
    readiness = Readiness({"redis": partial(ping, redis), "postgresql": partial(ping_database, pool)}, ["redis"])
    rules = AccessRules.from_settings(settings)
    ingestion = Ingestion(pusher, pool, settings.max_body_bytes, settings.max_batch_events, rules)
    return create_app(metrics, readiness, partial(snapshot, redis, keys), ingestion)


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, settings: Settings | None = None) -> AsyncIterator[str]:
    """Serve `app` with a real uvicorn on a free loopback port, configured as `serve` does; yield its base URL."""
    settings = settings or Settings()
    server = Server(
        server_config(
            app, "127.0.0.1", 0, settings.header_timeout_s, settings.body_timeout_s, settings.max_header_bytes
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def pool(database_url: str, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, settings.db_pool_size)
    yield created
    await created.close()


@pytest.fixture
def pusher(redis: aioredis.Redis, keys: QueueKeys, settings: Settings) -> Pusher:
    return Pusher(redis, keys, settings.queue_max_length)


@pytest.fixture
async def api(pusher: Pusher, pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking to the real app on a real uvicorn server (no writer: events stay queued)."""
    app = api_app(pusher, pool, Metrics())
    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        yield client


@pytest.fixture
async def service(api: httpx.AsyncClient, writer: Writer) -> httpx.AsyncClient:
    """The api and a writer together: what is accepted becomes visible in stats."""
    return api


async def eventually(check: Callable[[], Awaitable[T]], timeout_s: float = 5.0) -> T:
    """Poll `check` until it stops raising AssertionError, for at most `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return await check()
        except AssertionError:
            if asyncio.get_running_loop().time() >= deadline:
                raise
        await asyncio.sleep(0.02)


def event(**fields: Any) -> dict[str, Any]:
    """A valid event, with `fields` replacing or adding to the defaults."""
    base: dict[str, Any] = {
        "site_id": "site-abc-123",
        "event_type": "page_view",
        "path": "/pricing",
        "user_id": "user-xyz-789",
        "timestamp": "2025-11-12T19:30:01Z",
    }
    base.update(fields)
    return base
