"""Operating dead letters: `analytics dead-letters list|requeue|purge` against a real Redis."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from analytics.events.record import Event, encode_event
from analytics.queue.consumer import WriterQueue
from analytics.queue.dead_letters import DeadLetters
from analytics.queue.keys import QueueKeys
from analytics.queue.shards import record_shards

QUEUED = encode_event(Event("site", "page_view", "/p", None, 1_762_975_801_000_000, accepted_ms=1_762_975_802_000))


async def dead_letter_two(redis: aioredis.Redis, keys: QueueKeys) -> None:
    queue = WriterQueue(redis, keys, "w", 2)
    await queue.dead_letter([(QUEUED, "rejected by PostgreSQL: DataError: x"), (b"\x01junk", "undecodable")])


def run_cli(redis_url: str, keys: QueueKeys, tmp_path: Path, *args: str, shards: int | None = None) -> str:
    environment = {**os.environ, "REDIS_URL": redis_url, "ANALYTICS_REDIS_PREFIX": keys.prefix}
    if shards is not None:
        environment["ANALYTICS_QUEUE_SHARDS"] = str(shards)
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


async def dead_letter_in_shards(redis: aioredis.Redis, keys: QueueKeys, shards: int) -> None:
    """One dead letter in each shard, named after it, as writer lanes on those shards leave them."""
    for shard in range(shards):
        lane = WriterQueue(redis, keys, f"w{shard}", 2, shards)
        await redis.rpush(keys.of_shard(shard).queue, b"queued")
        while lane.shard != shard:
            await lane.end_turn()
            await lane.take_turn()
        await lane.claim(1)
        await lane.dead_letter([(b"record of shard %d" % shard, f"reason {shard}")])
        await lane.ack()
        await lane.end_turn()


@pytest.mark.parametrize("configured", [3, None], ids=["configured", "recorded"])
async def test_the_commands_cover_every_shard(
    redis: aioredis.Redis, redis_url: str, keys: QueueKeys, tmp_path: Path, configured: int | None
) -> None:
    """With ANALYTICS_QUEUE_SHARDS=3, or with the default of 1 where the deployment recorded 3 shards (an operator
    who runs the command without the service's settings still sees every shard)."""
    await record_shards(redis, keys, 3)
    await dead_letter_in_shards(redis, keys, 3)
    listed = [json.loads(line) for line in run_cli(redis_url, keys, tmp_path, "list", shards=configured).splitlines()]
    assert [(entry["shard"], entry["reason"], entry["data_base64"]) for entry in listed] == [
        (shard, f"reason {shard}", base64.b64encode(b"record of shard %d" % shard).decode()) for shard in range(3)
    ]
    limited = run_cli(redis_url, keys, tmp_path, "list", "--limit", "2", shards=configured).splitlines()
    assert [json.loads(line)["shard"] for line in limited] == [0, 1]

    assert run_cli(redis_url, keys, tmp_path, "requeue", shards=configured).strip() == "requeued 3 record(s)"
    for shard in range(3):
        assert await redis.lrange(keys.of_shard(shard).queue, 0, -1) == [b"record of shard %d" % shard]
        assert await redis.llen(keys.of_shard(shard).dead) == 0

    await dead_letter_in_shards(redis, keys, 3)
    assert run_cli(redis_url, keys, tmp_path, "purge", shards=configured).strip() == "purged 3 record(s)"
    assert [await redis.llen(keys.of_shard(shard).dead) for shard in range(3)] == [0, 0, 0]
