"""The counting lane: counts what the writer lanes stored into the rollups, visits and report cells, many batches at
a time (store/events.py: `count_pending`). One per writer process; the counting lock lets one step run at a time over
all processes, so the others wait their turn. Stopped, it ends after its current step: what it has not counted stays
in `uncounted_events` for the next process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

from analytics.errors import DatabaseError, DatabaseUnavailable
from analytics.observability.logs import StateLog
from analytics.observability.metrics import Metrics
from analytics.store.events import COUNT_STEP_EVENTS, EventStore
from analytics.writer.loop import backoff_delay

logger = logging.getLogger(__name__)

# Between steps that found less than a full step's events: what stats wait for at most, beyond the batch's own commit.
COUNT_INTERVAL_S: Final = 0.2


class CountingLane:
    def __init__(self, store: EventStore, metrics: Metrics, interval_s: float = COUNT_INTERVAL_S) -> None:
        self._store = store
        self._metrics = metrics
        self._interval_s = interval_s
        self._stop = asyncio.Event()
        self._database = StateLog(
            logger,
            "counting: postgresql unreachable or refusing the step, retrying with backoff",
            "counting: steps commit again",
        )
        self.counted = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until `stop()`: one step after another while they come back full, a pause when not."""
        try:
            while not self._stop.is_set():
                try:
                    started = time.perf_counter()
                    counted = await self._store.count(COUNT_STEP_EVENTS)
                    self._database.recovered()
                except DatabaseError as error:
                    if not isinstance(error, DatabaseUnavailable) and self._database.failures == 0:
                        logger.error("counting: postgresql refuses the step and needs an operator: %s", error)
                    self._database.failed(error)
                    await self._sleep(backoff_delay(self._database.failures))
                    continue
                if counted:
                    self.counted += counted
                    self._metrics.events_counted.inc(counted)
                    self._metrics.count_seconds.observe(time.perf_counter() - started)
                if counted is None or counted < COUNT_STEP_EVENTS:
                    await self._sleep(self._interval_s)
        finally:
            await self._store.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
