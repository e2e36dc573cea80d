"""A counting lane: counts what the writer lanes stored into the rollups, visits and report cells, many batches at a
time (store/events.py: `count_pending`). A writer process runs as many as it has writer lanes. Each goes round the
counting buckets, one step per bucket whose lock it gets, so lanes of every process spread over the buckets and never
count the same sites at once. Stopped, it ends after its current step: what it has not counted stays in
`uncounted_events` for the others, or the next process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Final

from analytics.errors import DatabaseError, DatabaseUnavailable
from analytics.observability.logs import StateLog
from analytics.observability.metrics import Metrics
from analytics.store.events import COUNT_STEP_EVENTS, COUNTING_BUCKETS, EventStore
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
        """Until `stop()`: round after round of the buckets; a pause after a round in which no step came back full."""
        first = random.randrange(COUNTING_BUCKETS)
        try:
            while not self._stop.is_set():
                full = False
                for turn in range(COUNTING_BUCKETS):
                    if self._stop.is_set():
                        break
                    full |= await self._step((first + turn) % COUNTING_BUCKETS)
                if not full:
                    await self._sleep(self._interval_s)
        finally:
            await self._store.close()

    async def _step(self, bucket: int) -> bool:
        """One step on `bucket`; whether it came back full (more may be waiting there)."""
        try:
            started = time.perf_counter()
            counted = await self._store.count(bucket, COUNT_STEP_EVENTS)
            self._database.recovered()
        except DatabaseError as error:
            if not isinstance(error, DatabaseUnavailable) and self._database.failures == 0:
                logger.error("counting: postgresql refuses the step and needs an operator: %s", error)
            self._database.failed(error)
            await self._sleep(backoff_delay(self._database.failures))
            return False
        if counted:
            self.counted += counted
            self._metrics.events_counted.inc(counted)
            self._metrics.count_seconds.observe(time.perf_counter() - started)
        return counted == COUNT_STEP_EVENTS

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
