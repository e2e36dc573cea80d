"""A deterministic, roughly realistic event stream for the writer and stats benchmarks.

- 300 sites with Zipf-like traffic (site rank r gets a share proportional to 1/r: the busiest ~16 %, the last ~0.05 %);
- paths per site fall with rank (the busiest has 2,000, the smallest 20), page popularity Zipf-like within a site;
- visitors per site fall with rank (the busiest has 200,000); 15 % of events carry no user id;
- 80 % page_view, 15 % click, 5 % signup;
- timestamps in arrival order, as live traffic reaches the writer: a stream of n events spread over `days` days ending
  2025-11-30 gives event i a time in the i-th 1/n of that span (microsecond precision, jittered within its slot).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event

SITES: Final = 300
DAYS: Final = 90
END: Final = datetime(2025, 12, 1, tzinfo=UTC)
EVENT_TYPES: Final = ("page_view", "click", "signup")
EVENT_TYPE_WEIGHTS: Final = (80, 15, 5)
ANONYMOUS_SHARE: Final = 0.15


def site_id(rank: int) -> str:
    return f"site-{rank:04d}"


class EventStream:
    """`total` events over the last `days` days, in time order; the same seed gives the same events."""

    def __init__(self, seed: int, total: int, days: float = DAYS) -> None:
        self._random = random.Random(seed)
        self.total = total
        self._emitted = 0
        self._site_cum = list(itertools.accumulate(1 / rank for rank in range(1, SITES + 1)))
        self._paths: list[tuple[list[str], list[float]]] = []
        self._users: list[int] = []
        for rank in range(1, SITES + 1):
            count = max(20, 2000 // rank)
            paths = [
                f"/{section}/page-{n}" for n, section in zip(range(count), itertools.cycle(("blog", "docs", "shop")))
            ]
            paths[0] = "/"
            self._paths.append((paths, list(itertools.accumulate(1 / (n + 1) for n in range(count)))))
            self._users.append(max(100, 200_000 // rank))
        span_us = round(days * 86_400 * 1_000_000)
        self._start_us = epoch_microseconds(END) - span_us
        self._slot_us = span_us / total

    def events(self, count: int) -> list[Event]:
        """The next `count` events of the stream (it may run past `total`: later times, same spacing)."""
        draw = self._random
        first = self._emitted
        self._emitted += count
        sites = draw.choices(range(SITES), cum_weights=self._site_cum, k=count)
        types = draw.choices(EVENT_TYPES, weights=EVENT_TYPE_WEIGHTS, k=count)
        records: list[Event] = []
        for index, (site, event_type) in enumerate(zip(sites, types, strict=True), first):
            paths, cum = self._paths[site]
            path = draw.choices(paths, cum_weights=cum)[0]
            user = None if draw.random() < ANONYMOUS_SHARE else f"u{site + 1}-{draw.randrange(self._users[site])}"
            timestamp = self._start_us + int((index + draw.random()) * self._slot_us)
            records.append(Event(site_id(site + 1), event_type, path, user, timestamp))
        return records

    def batches(self, count: int, size: int) -> Iterator[list[Event]]:
        """The next `count` events, `size` at a time."""
        for start in range(0, count, size):
            yield self.events(min(size, count - start))
