"""A load of numbered events that remembers every answer, and the exact comparisons made on it afterwards."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from tests.helpers.factories import event_for


@dataclass(frozen=True)
class Answer:
    number: int
    status: int | None  # None: the request failed in transport, its outcome is unknown
    sent_at: float
    answered_at: float


@dataclass
class Load:
    """Sends numbered events until told to stop; remembers every answer."""

    base_url: str
    concurrency: int = 24
    answers: list[Answer] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    async def run(self, keep_going: Callable[[], bool]) -> None:
        await asyncio.gather(*[self._worker(keep_going) for _ in range(self.concurrency)])

    async def _worker(self, keep_going: Callable[[], bool]) -> None:
        # A client (one connection) per worker: httpcore's pool scans every connection for every request, which made
        # one shared 24-connection client the bottleneck (about 170 requests/s here, against 490 this way).
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as client:
            await self._send_while(client, keep_going)

    async def _send_while(self, client: httpx.AsyncClient, keep_going: Callable[[], bool]) -> None:
        while keep_going():
            number = next(self._numbers)
            sent_at = time.monotonic()
            status: int | None
            try:
                status = (await client.post("/api/ingestion/event", json=event_for(number))).status_code
            except httpx.TransportError:
                status = None
                await asyncio.sleep(0.01)
            self.answers.append(Answer(number, status, sent_at, time.monotonic()))
            if status == 503:
                await asyncio.sleep(0.01)

    def numbers(self, status: int | None) -> set[int]:
        return {answer.number for answer in self.answers if answer.status == status}

    @property
    def accepted(self) -> set[int]:
        return self.numbers(202)

    @property
    def sent(self) -> set[int]:
        return {answer.number for answer in self.answers}


async def load_while(load: Load, condition: asyncio.Event | None = None, at_least: int = 0) -> asyncio.Task[None]:
    """Start the load; it runs until `condition` is set and at least `at_least` events were sent."""
    stop = condition or asyncio.Event()

    def keep_going() -> bool:
        return not stop.is_set() or len(load.answers) < at_least

    return asyncio.create_task(load.run(keep_going))


async def accepted_at_least(load: Load, count: int, timeout_s: float = 30) -> None:
    """Wait (bounded) until the load has had `count` events answered 202: a fault then lands on real traffic."""
    deadline = time.monotonic() + timeout_s
    while len(load.accepted) < count:
        assert time.monotonic() < deadline, f"only {len(load.accepted)} events accepted in {timeout_s} s"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def tasks_cancelled_after() -> AsyncIterator[None]:
    """Cancel what a test started and left running: a test that fails part-way leaves its load sending to a stopped
    server in the session's event loop, which slowed every later test (a CI run took 76 minutes and failed a dozen
    timing-bound tests after one fault test failed)."""
    before = asyncio.all_tasks()
    yield
    leftover = asyncio.all_tasks() - before - {asyncio.current_task()}
    for task in leftover:
        task.cancel()
    if leftover:
        await asyncio.wait(leftover, timeout=10)


def assert_exact(load: Load, stored: set[int]) -> None:
    """Nothing answered 202 was lost, nothing stored was never sent (duplicates: `Stack.stored_numbers`)."""
    lost = load.accepted - stored
    invented = stored - load.sent
    assert len(lost) == 0, f"{len(lost)} events answered 202 were not stored, e.g. {sorted(lost)[:5]}"
    assert len(invented) == 0, f"{len(invented)} stored events were never sent"
