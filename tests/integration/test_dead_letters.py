"""Operating dead letters: `analytics dead-letters list|requeue|purge` against a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from analytics.events.record import Event, encode_event
from analytics.queue.consumer import WriterQueue
from analytics.queue.dead_letters import DeadLetters
from analytics.queue.keys import QueueKeys

QUEUED = encode_event(Event("site", "page_view", "/p", None, 1_762_975_801_000_000, accepted_ms=1_762_975_802_000))


async def dead_letter_two(redis: aioredis.Redis, keys: QueueKeys) -> None:
    queue = WriterQueue(redis, keys, "w", 2)
    await queue.dead_letter([(QUEUED, "rejected by PostgreSQL: DataError: x"), (b"\x01junk", "undecodable")])


def run_cli(redis_url: str, keys: QueueKeys, tmp_path: Path, *args: str) -> str:
    environment = {**os.environ, "REDIS_URL": redis_url, "ANALYTICS_REDIS_PREFIX": keys.prefix}
    result = subprocess.run(
        [sys.executable, "-m", "analytics", "dead-letters", *args],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return result.stdout.decode()


async def test_list_shows_reason_time_and_the_event(
    redis: aioredis.Redis, redis_url: str, keys: QueueKeys, tmp_path: Path
) -> None:
    await dead_letter_two(redis, keys)
    first, second = [json.loads(line) for line in run_cli(redis_url, keys, tmp_path, "list").splitlines()]
    assert first["reason"] == "rejected by PostgreSQL: DataError: x"
    assert first["event"] == {
        "site_id": "site",
        "event_type": "page_view",
        "path": "/p",
        "user_id": None,
        "timestamp": "2025-11-12T19:30:01+00:00",
    }
    assert first["failed_at"].endswith("+00:00")
    assert second["reason"] == "undecodable"
    assert second["data_base64"] == "AWp1bms="


async def test_requeue_moves_records_back_to_the_queue(
    redis: aioredis.Redis, redis_url: str, keys: QueueKeys, tmp_path: Path
) -> None:
    await dead_letter_two(redis, keys)
    assert run_cli(redis_url, keys, tmp_path, "requeue").strip() == "requeued 2 record(s)"
    assert await redis.lrange(keys.queue, 0, -1) == [QUEUED, b"\x01junk"]
    assert await redis.llen(keys.dead) == 0


async def test_purge_empties_the_dead_list(
    redis: aioredis.Redis, redis_url: str, keys: QueueKeys, tmp_path: Path
) -> None:
    await dead_letter_two(redis, keys)
    assert run_cli(redis_url, keys, tmp_path, "purge").strip() == "purged 2 record(s)"
    assert await redis.llen(keys.dead) == 0
    assert await redis.llen(keys.queue) == 0


async def test_requeue_of_many_goes_in_chunks(redis: aioredis.Redis, keys: QueueKeys) -> None:
    queue = WriterQueue(redis, keys, "w", 2)
    await queue.dead_letter([(b"%d" % n, "r") for n in range(2500)])
    assert await DeadLetters(redis, keys).requeue() == 2500
    assert await redis.lrange(keys.queue, 0, -1) == [b"%d" % n for n in range(2500)]
