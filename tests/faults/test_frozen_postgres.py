"""A PostgreSQL that accepts connections and answers nothing (`kill -STOP`): stats and readiness keep their deadlines.

Stopped PostgreSQL refuses connections at once; a frozen one lets the kernel accept them and then says nothing, so
every connect and query waits. That must cost a stats caller at most 5 s (a 503), a readiness probe at most its
1 s timeout, and an ingestion pod's probe nothing at all (ingestion does not need PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.helpers.backends import PostgresServer
from tests.helpers.processes import RoleProcess
from tests.helpers.stack import Stack

pytestmark = pytest.mark.faults

STATS = "/api/reporting/stats?site_id=faults"


async def timed_get(client: httpx.AsyncClient, url: str) -> tuple[int, float]:
    started = time.monotonic()
    response = await client.get(url, timeout=60)
    return response.status_code, time.monotonic() - started


async def started(stack: Stack, role: str) -> RoleProcess:
    process = stack.role(role).start()
    await process.healthy()
    return process


async def test_stats_answer_503_within_5_s_and_readiness_keeps_its_timeout(
    stack: Stack, fault_postgres: PostgresServer
) -> None:
    api = await started(stack, "api")
    writer = await started(stack, "writer")
    async with httpx.AsyncClient() as client:
        # One pooled connection already open, the others to be opened: both kinds must give up in time.
        assert (await client.get(api.base_url + STATS, timeout=10)).status_code == 404
        fault_postgres.freeze()
        try:
            calls = [timed_get(client, api.base_url + STATS) for _ in range(6)]
            probes = [timed_get(client, api.base_url + "/api/ready") for _ in range(3)]
            writer_probes = [timed_get(client, writer.base_url + "/api/ready") for _ in range(3)]
            answers = await asyncio.gather(*calls, *probes, *writer_probes)
            stats, api_ready, writer_ready = answers[:6], answers[6:9], answers[9:]
            # Later calls do not queue behind earlier ones: each has its own deadline.
            more = await asyncio.gather(*(timed_get(client, api.base_url + STATS) for _ in range(6)))
            ingested = await client.post(
                api.base_url + "/api/ingestion/event",
                json={"site_id": "faults", "event_type": "page_view", "timestamp": "2025-11-12T19:30:01Z"},
            )
        finally:
            fault_postgres.thaw()
        assert all(status == 503 and seconds < 5 for status, seconds in stats + more), stats + more
        assert all(status == 200 and seconds < 0.5 for status, seconds in api_ready), api_ready
        assert all(status == 503 and seconds < 1.5 for status, seconds in writer_ready), writer_ready
        assert ingested.status_code == 202, "ingestion does not need PostgreSQL"

        deadline = time.monotonic() + 30
        while (await client.get(api.base_url + STATS, timeout=10)).status_code == 503:
            assert time.monotonic() < deadline, "stats did not recover after PostgreSQL thawed"
            await asyncio.sleep(0.2)
        assert (await client.get(writer.base_url + "/api/ready", timeout=10)).status_code == 200
