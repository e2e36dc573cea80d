"""`WriterQueue.give_back` moves the processing list back to the queue in one server-side step: never loses it."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from analytics.errors import QueueUnavailable
from analytics.queue.consumer import WriterQueue
from analytics.queue.keys import QueueKeys


async def test_give_back_that_fails_leaves_the_batch_in_processing(
    writer_queue: WriterQueue, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    batch = [b"%d" % n for n in range(3)]
    await redis.rpush(keys.queue, *batch)
    assert await writer_queue.claim(10) == batch
    await redis.set(keys.queue, b"not a list")  # the re-push now fails with WRONGTYPE, a real Redis error

    with pytest.raises(QueueUnavailable, match="WRONGTYPE"):
        await writer_queue.give_back()

    assert await redis.lrange(keys.processing(writer_queue.writer_id), 0, -1) == batch


async def test_give_back_moves_more_than_lua_can_unpack_at_once_in_order(
    writer_queue: WriterQueue, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    batch = [b"%d" % n for n in range(8_500)]
    await redis.rpush(keys.queue, b"already queued")
    await redis.rpush(keys.processing(writer_queue.writer_id), *batch)

    assert await writer_queue.give_back() == len(batch)

    assert await redis.lrange(keys.queue, 0, -1) == [b"already queued", *batch]
    assert await redis.exists(keys.processing(writer_queue.writer_id)) == 0


async def test_give_back_of_nothing_is_zero(writer_queue: WriterQueue, redis: aioredis.Redis, keys: QueueKeys) -> None:
    assert await writer_queue.give_back() == 0
    assert await redis.exists(keys.queue, keys.processing(writer_queue.writer_id)) == 0
