"""`/api/ready` follows the dependencies each role needs, without a restart."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.helpers.backends import PostgresServer, ValkeyServer
from tests.helpers.processes import RoleProcess
from tests.helpers.stack import Stack

pytestmark = pytest.mark.faults


async def readiness(process: RoleProcess) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{process.base_url}/api/ready", timeout=5)
    return response.status_code, response.json()


async def until(process: RoleProcess, status: int, timeout_s: float = 15) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        code, body = await readiness(process)
        if code == status or time.monotonic() > deadline:
            assert code == status, body
            return body
        await asyncio.sleep(0.1)


async def test_ready_names_redis_when_it_is_down_and_recovers(stack: Stack, fault_valkey: ValkeyServer) -> None:
    api = stack.role("api").start()
    await api.healthy()
    assert await until(api, 200) == {"status": "ready", "checks": {"redis": "up", "postgresql": "up"}}
    fault_valkey.stop()
    try:
        body = await until(api, 503)
        assert body == {
            "status": "error",
            "message": "not ready: redis unavailable",
            "checks": {"redis": "down", "postgresql": "up"},
        }
        async with httpx.AsyncClient() as client:
            health = await client.get(f"{api.base_url}/api/healthcheck", timeout=5)
        assert health.status_code == 200, "liveness does not depend on Redis"
    finally:
        fault_valkey.start()
    assert (await until(api, 200))["status"] == "ready"


async def test_postgres_down_makes_the_writer_unready_but_not_the_api(
    stack: Stack, fault_postgres: PostgresServer
) -> None:
    api = stack.role("api").start()
    writer = stack.role("writer").start()
    await api.healthy()
    await writer.healthy()
    await until(writer, 200)
    fault_postgres.stop()
    try:
        body = await until(writer, 503)
        assert body["message"] == "not ready: postgresql unavailable"
        code, api_body = await readiness(api)
        assert code == 200, "ingestion needs only Redis"
        assert api_body["checks"] == {"redis": "up", "postgresql": "down"}
    finally:
        fault_postgres.start()
    await until(writer, 200)
