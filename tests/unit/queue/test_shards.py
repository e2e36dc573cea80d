"""Which shard a writer lane takes its next turn on (`plan_turn`): every shard holding records is served, however
many more shards there are than lanes."""

from __future__ import annotations

import random

from analytics.queue.shards import plan_turn


def turn(after: int, lengths: list[int], leased: list[bool]) -> int:
    """The shard a lane works next when every lease it tries is free (the first candidate), or its fallback."""
    candidates, fallback = plan_turn(after, lengths, leased)
    return candidates[0] if candidates else fallback


def test_candidates_are_the_free_shards_holding_records_round_robin_from_the_last_turn() -> None:
    lengths = [5, 0, 7, 1, 9]
    leased = [False, False, True, False, False]
    assert plan_turn(2, lengths, leased) == ([3, 4, 0], 4)
    assert plan_turn(4, lengths, leased) == ([0, 3, 4], 4)


def test_when_every_shard_with_records_is_leased_the_lane_helps_the_longest_unleased() -> None:
    """Fewer shards than lanes: lanes share shards, as two lanes shared the one queue before shards."""
    assert plan_turn(0, [3], [True]) == ([], 0)
    assert plan_turn(0, [3, 8, 0], [True, True, False]) == ([], 1)


def test_idle_lanes_wait_on_shards_nobody_watches() -> None:
    assert plan_turn(1, [0, 0, 0, 0], [True, False, False, True]) == ([2, 1], 2)
    assert plan_turn(1, [0, 0], [True, True]) == ([], 0)


def test_a_short_shard_is_served_within_one_sweep_while_long_shards_never_empty() -> None:
    """Two lanes, eight shards, seven of them always long and one holding a single record: a lane that chose the
    longest shard would never serve it; round-robin serves it within a sweep of the lanes' turns."""
    lengths = [1_000_000] * 8
    lengths[5] = 1
    cursors = [0, 3]
    leased = [False] * 8
    for turns in range(1, 17):
        lane = turns % 2
        chosen = turn(cursors[lane], lengths, leased)
        cursors[lane] = chosen
        if chosen == 5:
            assert turns <= 8
            return
    raise AssertionError("shard 5 was never served")


def test_every_shard_with_records_is_served_under_random_loads_and_leases() -> None:
    """Random lengths and leases held by other lanes: a lane's consecutive turns visit every shard that keeps records
    and is free, within one sweep."""
    rng = random.Random(17)
    for _ in range(200):
        count = rng.randint(1, 16)
        lengths = [rng.choice([0, 1, rng.randint(2, 10_000)]) for _ in range(count)]
        leased = [rng.random() < 0.3 for _ in range(count)]
        served: set[int] = set()
        cursor = rng.randrange(count)
        for _ in range(count):
            candidates, _ = plan_turn(cursor, lengths, leased)
            if candidates:
                cursor = candidates[0]
                if lengths[cursor]:  # not an idle wait
                    served.add(cursor)
        assert served == {shard for shard in range(count) if lengths[shard] and not leased[shard]}
