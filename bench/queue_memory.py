"""Redis bytes per queued event: push N typical records, read INFO used_memory before and after.

A record is what the api queues for a page view a browser's tracker sent (url with a campaign, referrer, event id),
enriched as for a desktop Chrome.

Usage: python bench/queue_memory.py [--redis-url redis://127.0.0.1:6379/0] [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis.asyncio as aioredis

from analytics.enrich.country import country_lookup
from analytics.enrich.pipeline import Enricher, Requester
from analytics.events.contract import decode_event
from analytics.events.record import Event, encode_event
from bench.results import record_result

SAMPLE = (
    b'{"site_id":"site-abc-123","event_type":"page_view","url":"https://example.com/blog/post-%d?utm_source=news",'
    b'"referrer":"https://www.google.com/","event_id":"%032x","timestamp":"2025-11-12T19:30:01.%06dZ"}'
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


async def measure(url: str, events: int) -> float:
    client = aioredis.Redis.from_url(url)
    key = "{bench-memory}:queue"
    await client.delete(key)
    enricher = Enricher(country_lookup("bundled"))
    received_us = time.time_ns() // 1000
    salt = bytes(32)

    def record(n: int) -> bytes:
        submission = decode_event(SAMPLE % (n % 50, n, n % 1_000_000), received_us)
        event = enricher.event(submission, Requester(CHROME, f"81.2.{n % 250}.{n % 199}", None), salt)
        assert isinstance(event, Event)
        return encode_event(event)

    before = (await client.info("memory"))["used_memory"]
    for start in range(0, events, 1000):
        await client.rpush(key, *[record(n) for n in range(start, start + 1000)])
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
