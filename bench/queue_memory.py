"""Redis bytes per queued event: push N typical records, read INFO used_memory before and after.

Usage: python bench/queue_memory.py [--redis-url redis://127.0.0.1:6379/0] [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio

import redis.asyncio as aioredis

from analytics.events.contract import decode_event
from analytics.events.record import encode_event
from bench.results import record_result

SAMPLE = (
    b'{"site_id":"site-abc-123","event_type":"page_view","path":"/blog/post-%d",'
    b'"user_id":"user-%d","timestamp":"2025-11-12T19:30:01.%06dZ"}'
)


async def measure(url: str, events: int) -> float:
    client = aioredis.Redis.from_url(url)
    key = "{bench-memory}:queue"
    await client.delete(key)
    before = (await client.info("memory"))["used_memory"]
    for start in range(0, events, 1000):
        records = [encode_event(decode_event(SAMPLE % (n % 50, n, n % 1_000_000))) for n in range(start, start + 1000)]
        await client.rpush(key, *records)
    after = (await client.info("memory"))["used_memory"]
    await client.delete(key)
    await client.aclose()
    return float(after - before) / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    per_event = asyncio.run(measure(args.redis_url, args.events))
    record_result("queue memory", [f"Redis bytes per queued event ({args.events:,} events): {per_event:.1f}"])


if __name__ == "__main__":
    main()
