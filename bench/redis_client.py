"""redis-py per-command cost: the client version decides how many pushes one api process can make.

Run it once per redis-py version, each from a virtual environment with that version installed:
    python -m bench.redis_client [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis
import redis.asyncio as aioredis

from bench.results import record_result

ROUNDS = 20_000
CONCURRENCY = 40


async def measure(url: str) -> list[str]:
    client = aioredis.Redis.from_url(url)
    key = "{bench-client}:queue"
    await client.delete(key)
    started = time.perf_counter()
    for _ in range(ROUNDS):
        await client.ping()
    ping = ROUNDS / (time.perf_counter() - started)

    started = time.perf_counter()
    for _ in range(ROUNDS // 10):
        async with client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *([b"x" * 50] * 64))
            await pipe.execute()
    transactions = (ROUNDS // 10) / (time.perf_counter() - started)

    async def pusher() -> None:
        for _ in range(ROUNDS // CONCURRENCY):
            await client.rpush(key, b"y" * 50)

    started = time.perf_counter()
    await asyncio.gather(*[pusher() for _ in range(CONCURRENCY)])
    concurrent = ROUNDS / (time.perf_counter() - started)
    await client.delete(key)
    await client.aclose()
    return [
        f"redis-py {redis.__version__}: PING {ping:,.0f}/s; MULTI/RPUSH(64)/EXEC {transactions:,.0f}/s; "
        f"RPUSH from {CONCURRENCY} concurrent tasks {concurrent:,.0f}/s"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    record_result(f"redis-py client cost ({redis.__version__})", asyncio.run(measure(args.redis_url)))


if __name__ == "__main__":
    main()
