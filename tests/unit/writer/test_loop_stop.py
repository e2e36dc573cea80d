"""A writer lane stops when told, whatever its housekeeping was doing: a fake queue whose heartbeat turns a
cancellation into a connection error, as a redis-py command cancelled mid-flight can, must not keep the lane alive."""

from __future__ import annotations

import asyncio

from analytics.config import Settings
from analytics.errors import QueueUnavailable
from analytics.observability.metrics import Metrics
from analytics.writer.loop import Writer


class IdleQueue:
    """An empty queue; each heartbeat takes a while, and a cancellation during one comes back as an outage."""

    writer_id = "lane"
    in_turn = False

    def __init__(self) -> None:
        self.heartbeats = 0

    async def refresh_shards(self) -> int:
        return 1

    async def take_turn(self) -> None:
        self.in_turn = True

    async def end_turn(self) -> None:
        self.in_turn = False

    async def held(self) -> list[bytes]:
        return []

    async def take_first(self, timeout_s: float) -> bytes | None:
        await asyncio.sleep(timeout_s)
        return None

    async def heartbeat(self) -> None:
        self.heartbeats += 1
        try:
            await asyncio.sleep(1.0)  # a slow command, bounded as the client's socket timeout bounds one
        except asyncio.CancelledError:
            raise QueueUnavailable("Connection closed by server.") from None

    async def recover_orphans(self) -> int:
        return 0

    async def give_back(self) -> int:
        return 0

    async def retire(self) -> None:
        return None


class NoStore:
    def attach(self) -> None:
        return None

    async def release(self) -> None:
        return None


async def test_a_lane_stops_though_its_heartbeat_swallows_a_cancellation() -> None:
    queue = IdleQueue()
    writer = Writer(Settings(heartbeat_ttl_s=2), NoStore(), queue, Metrics())  # type: ignore[arg-type]
    running = asyncio.create_task(writer.run())
    await asyncio.sleep(0.5)  # the first heartbeat is in flight
    writer.stop()
    done, _ = await asyncio.wait({running}, timeout=3)  # not wait_for: cancelling it would hang like the bug
    assert running in done, "the lane did not stop"
    assert queue.heartbeats >= 1
