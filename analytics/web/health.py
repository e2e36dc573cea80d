"""Liveness, readiness and metrics: served by every role, on its own port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Final, Literal

from starlette.requests import Request
from starlette.responses import Response

from analytics.observability.metrics import Metrics
from analytics.queue.client import QueueSnapshot
from analytics.web.asgi import JSONResponse
from analytics.web.deadlines import abandon, within
from analytics.web.responses import Healthy, ReadyState

logger = logging.getLogger(__name__)

HEALTHY: Final = Healthy("API is running, healthy, and ready!")
READINESS_TIMEOUT_S: Final = 1.0
# How long a check this role does not need may still take once the required ones have answered.
OPTIONAL_CHECK_GRACE_S: Final = 0.05
PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"

HealthCheck = Callable[[], Awaitable[None]]
State = Literal["up", "down"]


class Readiness:
    """Named dependency checks, run concurrently; ready when every required one answers within the timeout.

    Only the required checks are waited for: a check this role can do without (PostgreSQL for the api role) is
    reported as it stands once the required ones are in, after at most a short grace, so a frozen database never
    slows an ingestion pod's probe.
    """

    def __init__(self, checks: Mapping[str, HealthCheck], required: Collection[str]) -> None:
        self._checks = dict(checks)
        self._required = frozenset(required)

    async def __call__(self) -> tuple[bool, dict[str, State]]:
        probes = {name: asyncio.ensure_future(check()) for name, check in self._checks.items()}
        required = [probe for name, probe in probes.items() if name in self._required]
        if required:
            await asyncio.wait(required, timeout=READINESS_TIMEOUT_S)
        optional = [probe for probe in probes.values() if not probe.done()]
        if optional:
            await asyncio.wait(optional, timeout=OPTIONAL_CHECK_GRACE_S if required else READINESS_TIMEOUT_S)
        states = {name: _settled_state(probe) for name, probe in probes.items()}
        return all(states[name] == "up" for name in self._required), states


def _settled_state(probe: asyncio.Future[None]) -> State:
    """`up` for a probe that finished cleanly; anything else is `down`, and an unfinished one is abandoned."""
    if not probe.done():
        abandon(probe)
        return "down"
    return "up" if not probe.cancelled() and probe.exception() is None else "down"


class Health:
    def __init__(
        self, readiness: Readiness, metrics: Metrics, queue_snapshot: Callable[[], Awaitable[QueueSnapshot]]
    ) -> None:
        self._readiness = readiness
        self._metrics = metrics
        self._queue_snapshot = queue_snapshot

    async def healthcheck(self, request: Request) -> Response:
        """Liveness: touches no backend."""
        return JSONResponse(HEALTHY)

    async def ready(self, request: Request) -> Response:
        is_ready, checks = await self._readiness()
        if is_ready:
            return JSONResponse(ReadyState(status="ready", checks=checks))
        down = ", ".join(name for name, state in checks.items() if state == "down")
        return JSONResponse(
            ReadyState(status="error", message=f"not ready: {down} unavailable", checks=checks),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    async def metrics(self, request: Request) -> Response:
        """Counters of this process (of every worker, under `--workers`), plus the queue as Redis sees it now (the
        last reading, not a failure, when Redis is away)."""
        metrics = self._metrics
        try:
            queue = await within(READINESS_TIMEOUT_S, self._queue_snapshot())
        except Exception:
            logger.debug("queue gauges skipped: Redis did not answer")
        else:
            metrics.queue.set(queue.queued, queue.dead, queue.writers_alive, queue.processing, queue.shard_depths)
        return Response(metrics.render(), media_type=PROMETHEUS_TEXT)
