"""Token buckets against a fake clock: refill, burst, all-or-nothing batches, and bounded memory."""

from __future__ import annotations

import pytest

from analytics.web.ratelimit import PRUNE_EVERY_S, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)


def test_keys_do_not_share_buckets() -> None:
    buckets = TokenBuckets(rate=1, burst=1, clock=Clock())
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0
    assert buckets.take("a") > 0


def test_refill_stops_at_the_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=2, clock=clock)
    buckets.take("a")
    clock.now += 3600
    assert [buckets.take("a") for _ in range(3)][2] > 0


def test_all_or_nothing_takes_nothing_when_one_key_is_short() -> None:
    buckets = TokenBuckets(rate=1, burst=5, clock=Clock())
    assert buckets.take("busy", 4) == 0.0
    assert buckets.take_all({"quiet": 3, "busy": 3}) == pytest.approx(2.0)
    assert buckets.take("quiet", 5) == 0.0  # nothing was taken from it by the refused batch


def test_a_cost_above_the_burst_never_passes() -> None:
    buckets = TokenBuckets(rate=10, burst=5, clock=Clock())
    assert buckets.take("a", 6) > 0
    assert buckets.take("a", 5) == 0.0


def test_refilled_buckets_are_forgotten() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=2, clock=clock)
    for n in range(1000):
        buckets.take(f"client-{n}")
    assert len(buckets) == 1000
    clock.now += PRUNE_EVERY_S
    buckets.take("latest", 2)
    assert len(buckets) == 1
    clock.now += 0.5
    assert buckets.take("latest") > 0  # still remembered: it is not full


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_settings_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        TokenBuckets(rate, burst)
