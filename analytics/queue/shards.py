"""How many queue shards may hold records, and which shard a writer lane takes its next turn on.

The shard count is recorded in Redis as the most shards any process of the deployment was started with (it only
grows): after an operator lowers ANALYTICS_QUEUE_SHARDS the api pushes to fewer shards, but writers, metrics and the
dead-letter commands still cover every shard that may hold records, so none is stranded. Callers translate Redis
errors (`client.translated`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Final, cast

from analytics.queue.connection import Redis
from analytics.queue.keys import QueueKeys

# The one member of the `{prefix}:shards` sorted set; its score is the count (ZADD GT keeps the maximum atomically).
_COUNT: Final = "count"


async def record_shards(client: Redis, keys: QueueKeys, configured: int) -> int:
    """Record that this process uses `configured` shards (before it writes to any); the shards to cover."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.shard_count, {_COUNT: configured}, gt=True)
        pipe.zscore(keys.shard_count, _COUNT)
        _, recorded = await pipe.execute()
    return max(configured, int(recorded or 0))


async def known_shards(client: Redis, keys: QueueKeys, configured: int) -> int:
    """The shards to cover, read without recording anything (the scrape, the operator's commands)."""
    recorded = await cast("Awaitable[float | None]", client.zscore(keys.shard_count, _COUNT))
    return max(configured, int(recorded or 0))


def plan_turn(after: int, lengths: Sequence[int], leased: Sequence[bool]) -> tuple[list[int], int]:
    """The shards to try to lease for a lane's next turn, in order, and the shard to work unleased if none is won.

    Shards are scanned round-robin from the one after the lane's last turn, so a shard that holds records and has no
    lease is taken within one sweep of any lane's turns: none is starved while it holds records, however many more
    shards than lanes there are. When every shard holding records is leased, the lane helps the longest one without
    a lease (so with fewer shards than lanes, lanes share shards as they shared the one queue before). When no shard
    holds records, it leases a shard nobody watches and waits there, so idle lanes spread their waits over the shards.
    """
    count = len(lengths)
    order = [(after + 1 + step) % count for step in range(count)]
    waiting = [shard for shard in order if lengths[shard] > 0]
    if waiting:
        candidates = [shard for shard in waiting if not leased[shard]]
        return candidates, max(waiting, key=lambda shard: lengths[shard])
    return [shard for shard in order if not leased[shard]], order[0]
