"""How long a shard whose pushes fail rests before it is tried again."""

from __future__ import annotations

from analytics.queue.pusher import SHARD_REST_MAX_S, SHARD_REST_S, rest_after


def test_the_rest_doubles_from_the_first_failure_up_to_the_cap() -> None:
    assert (SHARD_REST_S, SHARD_REST_MAX_S) == (1.0, 16.0)
    assert [rest_after(failures) for failures in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]


def test_an_outage_of_any_length_rests_at_most_the_cap() -> None:
    # A one-Valkey deployment down for 3 s fails its one shard over a thousand times; 2.0 ** 1024 overflows.
    for failures in (1_024, 1_025, 100_000, 10**9):
        assert rest_after(failures) == SHARD_REST_MAX_S
