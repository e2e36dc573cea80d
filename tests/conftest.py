"""Real servers for the suite: PostgreSQL and Redis/Valkey from TEST_DATABASE_URL / TEST_REDIS_URL, or embedded.

Isolation: every test gets its own database, cloned from a migrated template (milliseconds), and its own Redis key
prefix, so tests never see each other's rows or queues. Fixtures only: what they are built from is in tests/helpers.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from analytics.config import Settings
from analytics.dev.embedded import embedded_postgres, embedded_valkey
from analytics.observability.metrics import Metrics
from analytics.queue.connection import connect_redis
from analytics.queue.consumer import WriterQueue
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import Pusher
from analytics.store.connect import create_pool
from analytics.store.events import EventStore
from analytics.store.migrations import migrate
from analytics.writer.loop import Writer, new_writer_id
from analytics.writer.slices import Slices
from tests.helpers.databases import cloned_database, with_database
from tests.helpers.servers import Client, api_app, serving


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
    leftovers += [key async for key in redis.scan_iter(match=f"{{{queue_keys.prefix}:*}}:*")]  # shards past 0
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
    running = Writer(settings, Slices([EventStore(database_url)]), writer_queue, Metrics())
    task = asyncio.create_task(running.run())
    yield running
    running.stop()
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


@pytest.fixture
def client_with(pusher: Pusher, pool: asyncpg.Pool) -> Client:
    """An HTTP client to a real server running the api app with the given settings (no writer)."""

    @asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings(**overrides)
        app = api_app(pusher, pool, Metrics(), settings)
        async with serving(app, settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            yield client

    return running
