"""One fault test's backends as its `analytics serve` processes see them: database, key prefix, environment."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from analytics.queue.keys import QueueKeys
from analytics.store.migrations import migrate
from tests.helpers.backends import PostgresServer
from tests.helpers.databases import with_database
from tests.helpers.factories import NUMBERED_SITE
from tests.helpers.processes import RoleProcess


@dataclass
class Stack:
    """One test's database, key prefix and the environment its `analytics serve` processes run with."""

    database_url: str
    redis_url: str
    keys: QueueKeys
    logs: Path
    environment: dict[str, str] = field(default_factory=dict)
    processes: list[RoleProcess] = field(default_factory=list)

    def role(self, role: str) -> RoleProcess:
        process = RoleProcess(role, self.environment, self.logs)
        self.processes.append(process)
        return process

    async def stored_numbers(self) -> set[int]:
        connection = await asyncpg.connect(self.database_url)
        try:
            rows = await connection.fetch("SELECT site_id, user_id FROM events")  # one snapshot for both counts
        finally:
            await connection.close()
        numbers = {int(row["user_id"][1:]) for row in rows}
        assert all(row["site_id"] == NUMBERED_SITE for row in rows)
        assert len(rows) == len(numbers), f"{len(rows)} rows for {len(numbers)} distinct events: duplicates stored"
        return numbers

    async def queue_state(self, redis: aioredis.Redis) -> tuple[int, int, int]:
        """(queued, held in processing lists, dead-lettered), over every queue shard."""
        totals = {"queue": 0, "processing": 0, "dead": 0}
        for pattern in (f"{{{self.keys.prefix}}}:*", f"{{{self.keys.prefix}:*}}:*"):
            async for key in redis.scan_iter(match=pattern):
                kind = key.decode().split("}:", 1)[1].split(":", 1)[0]
                if kind in totals:
                    totals[kind] += await redis.llen(key)
        return totals["queue"], totals["processing"], totals["dead"]


async def drained(stack: Stack, redis: aioredis.Redis, expected: set[int], timeout_s: float = 90) -> set[int]:
    """Wait until every expected event is stored and the queue and processing lists are empty; return what is stored."""
    deadline = time.monotonic() + timeout_s
    while True:
        stored = await stack.stored_numbers()
        queued, held, _ = await stack.queue_state(redis)
        if expected <= stored and queued == 0 and held == 0:
            return stored
        if time.monotonic() > deadline:
            return stored
        await asyncio.sleep(0.2)


async def new_stack(postgres: PostgresServer, redis_url: str, keys: QueueKeys, logs: Path) -> Stack:
    """A fresh migrated database on `postgres`, and the environment of `analytics serve` processes on it and Redis."""
    name = f"faults_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(postgres.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database_url = with_database(postgres.url, name)
    migrate(database_url)
    created = Stack(database_url, redis_url, keys, logs)
    created.environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("ANALYTICS_", "TEST_"))},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ANALYTICS_REDIS_PREFIX": keys.prefix,
        "ANALYTICS_MIGRATE": "false",
        "ANALYTICS_HEARTBEAT_TTL_S": "2",
        "ANALYTICS_BATCH_SIZE": "2000",
        "ANALYTICS_FLUSH_INTERVAL_MS": "50",
        "LOG_LEVEL": "info",
    }
    return created
