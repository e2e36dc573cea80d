"""A writer process's database connections, one per slice of the sites, shared by its lanes.

Two lanes merging batches of the same sites wait for each other: each batch locks its sites' rollup rows and its
visitors' lock buckets until it commits, so with any site in common the second waits for the first's whole merge
(bench/RESULTS.md, 2026-12-04: lock waits took 28 % of two lanes' time, and they stored 1.15x what one did). So a
lane splits each batch it claims by site: slice i goes through connection i, whose transactions only ever touch the
sites of slice i, and slices run side by side. A lane acks its batch once every slice is stored; a slice stored
before a failure is merged again on the retry, which the idempotency key makes a no-op. Writers in other processes
still share sites with this one: they wait as before, and stay exactly once as before.

The slice of a site is its lock bucket (`site_bucket`, the same function as `rebuild_visits` in store/sql/writer.sql)
modulo the number of slices, so two slices never share a bucket either.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Sequence
from typing import Final

from analytics.events.record import Event
from analytics.store.events import EventStore
from analytics.writer.batch import Failure, write_bisecting

# The visit rebuild's advisory lock buckets (store/sql/writer.sql: rebuild_visits).
LOCK_BUCKETS: Final = 1024


@functools.lru_cache(maxsize=65_536)
def site_bucket(site_id: str) -> int:
    """The low bits of the first four bytes of the site's MD5, as `rebuild_visits` computes them in SQL."""
    digest = hashlib.md5(site_id.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % LOCK_BUCKETS


def split(raw: Sequence[bytes], events: Sequence[Event], slices: int) -> list[tuple[list[bytes], list[Event]]]:
    """The batch's records by slice, each in the batch's order."""
    parts: list[tuple[list[bytes], list[Event]]] = [([], []) for _ in range(slices)]
    for data, event in zip(raw, events, strict=True):
        part = parts[site_bucket(event.site_id) % slices]
        part[0].append(data)
        part[1].append(event)
    return parts


class Slices:
    """The stores of a writer process, one per slice; each lane writes through all of them, one batch a store at
    a time. Closed when the last lane using it has released it."""

    def __init__(self, stores: Sequence[EventStore]) -> None:
        self._stores = list(stores)
        self._locks = [asyncio.Lock() for _ in self._stores]
        self._users = 0

    def attach(self) -> None:
        self._users += 1

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            for store in self._stores:
                await store.close()

    async def write(self, raw: Sequence[bytes], events: Sequence[Event]) -> tuple[int, list[Failure]]:
        """Store the batch, each slice in its own transaction; how many were new, and the refused records.

        Every slice is waited for before an error is raised, so none is cut off mid-commit; the caller keeps the
        whole batch and retries it.
        """
        parts = split(raw, events, len(self._stores))
        outcomes = await asyncio.gather(
            *(self._write_slice(index, *part) for index, part in enumerate(parts) if part[1]), return_exceptions=True
        )
        inserted, refused = 0, []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            inserted += outcome[0]
            refused += outcome[1]
        return inserted, refused

    async def _write_slice(self, index: int, raw: list[bytes], events: list[Event]) -> tuple[int, list[Failure]]:
        async with self._locks[index]:
            return await write_bisecting(self._stores[index], raw, events)
