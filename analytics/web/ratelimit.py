"""Token buckets keyed by client IP or site: in memory, per api process, no Redis round trip on the hot path."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final

PRUNE_EVERY_S: Final = 10.0


class TokenBuckets:
    """`rate` tokens per second refill each key's bucket up to `burst`.

    A bucket that has refilled completely behaves exactly like a new one, so such buckets are dropped every
    `PRUNE_EVERY_S`: memory stays proportional to the keys active in the last `burst / rate` seconds.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._next_prune = clock() + PRUNE_EVERY_S

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst
        tokens, updated = bucket
        return min(self.burst, tokens + (now - updated) * self.rate)

    def _wait(self, level: float, cost: int) -> float:
        """Seconds until `cost` tokens are there; never 0 for a cost larger than the bucket."""
        return (cost - level) / self.rate if cost <= self.burst else (cost / self.rate)

    def take(self, key: str, cost: int = 1) -> float:
        """Take `cost` tokens and return 0.0, or take nothing and return the seconds to wait."""
        now = self._now()
        level = self._level(key, now)
        if cost > level:
            return self._wait(level, cost)
        self._buckets[key] = (level - cost, now)
        return 0.0

    def take_all(self, costs: Mapping[str, int]) -> float:
        """All or nothing: take every key's cost if every bucket has it, else nothing; return the longest wait."""
        if len(costs) == 1:
            [(key, cost)] = costs.items()
            return self.take(key, cost)
        now = self._now()
        levels = {key: self._level(key, now) for key in costs}
        wait = max((self._wait(levels[key], cost) for key, cost in costs.items() if cost > levels[key]), default=0.0)
        if wait > 0:
            return wait
        for key, cost in costs.items():
            self._buckets[key] = (levels[key] - cost, now)
        return 0.0

    def _now(self) -> float:
        now = self._clock()
        if now >= self._next_prune:
            self._prune(now)
        return now

    def _prune(self, now: float) -> None:
        self._next_prune = now + PRUNE_EVERY_S
        self._buckets = {
            key: (tokens, updated)
            for key, (tokens, updated) in self._buckets.items()
            if tokens + (now - updated) * self.rate < self.burst
        }
