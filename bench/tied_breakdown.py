"""v2 top-N when every path of a site-day ties (anyone can post random paths), over real HTTP.

    python -m bench.tied_breakdown [--paths 200000] [--requests 300] [--seconds 15]

Stores, through the writer's merge (analytics.store.events.merge, batches of 5,000: events, rollups, visits and report
cells as the writer keeps them), site `tied`: --paths page views on one day, each of its own random path ('/' + md5)
and its own visitor, so every path ties on every metric; and site `small`: 2,000 page views of 200 visitors over 50
paths on the same day. Then, against the api role, one request at a time on one keep-alive connection after WARMUP:
GET /api/v2/stats/breakdown?property=path (limit 10) for the day, by visitors, by pageviews and with the default
metrics (pageviews, visitors), and GET /api/reporting/stats for the day (v1's top three), on both sites. Issue 14
asks p99 <= 20 ms of every top-N on the tied site-day. Between the two, the distinct keeper's pass over the day
(analytics/stats/keeper.py), which the writer role makes once the day is over.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
import uvloop

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event, now_ms
from analytics.stats.keeper import keep_past_days
from analytics.store.connect import create_pool
from analytics.store.events import merge, prepare
from analytics.store.partitions import Partitions
from bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Interference,
    analytics_service,
    bench_database,
    bench_redis,
    met,
    server_versions,
    summary_ms,
)
from bench.results import record_result
from bench.tied_paths import WARMUP, Target, over_http

PREFIX: Final = "bench-tied-breakdown"
DATABASE: Final = "bench_tied_breakdown"
DAY: Final = datetime(2025, 11, 30, tzinfo=UTC)
BATCH: Final = 5000
TARGET_P99_MS: Final = 20.0


def tied_events(paths: int) -> list[Event]:
    step = timedelta(days=1) / paths
    return [
        Event(
            "tied",
            "page_view",
            "/" + hashlib.md5(str(n).encode()).hexdigest(),
            None,
            epoch_microseconds(DAY + n * step),
            0,
            event_id=f"t{n}",
            visitor=f"v{n}",
        )
        for n in range(paths)
    ]


def small_events() -> list[Event]:
    step = timedelta(days=1) / 2000
    return [
        Event(
            "small",
            "page_view",
            f"/p{n % 50}",
            None,
            epoch_microseconds(DAY + n * step),
            0,
            event_id=f"s{n}",
            visitor=f"v{n % 200}",
        )
        for n in range(2000)
    ]


async def load(url: str, paths: int) -> float:
    """Store both sites' events as the writer does; returns seconds."""
    connection = await asyncpg.connect(url)
    started = time.perf_counter()
    try:
        await prepare(connection)
        partitions = Partitions()
        events = tied_events(paths) + small_events()
        accepted = now_ms()
        for start in range(0, len(events), BATCH):
            batch = events[start : start + BATCH]
            for event in batch:
                event.accepted_ms = accepted
            await partitions.before_batch(connection, batch)
            await merge(connection, batch)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def keep_the_day(url: str) -> str:
    """The distinct keeper's pass once the day is over, as the writer role makes it: the service's own code."""
    pool = await create_pool(url, 1)
    try:
        started = time.perf_counter()
        kept = await keep_past_days(pool, DAY.date() + timedelta(days=1), 1)
        seconds = time.perf_counter() - started
        async with pool.acquire() as connection:
            await connection.execute("VACUUM ANALYZE report_values")
    finally:
        await pool.close()
    return f"the distinct keeper's pass over the day: values of {kept.values} site-days kept in {seconds:.1f} s"


def targets(requests: int) -> list[Target]:
    day = DAY.date().isoformat()
    found = []
    for site in ("tied", "small"):
        breakdown = f"/api/v2/stats/breakdown?site_id={site}&period=day&date={day}&property=path&limit=10"
        for name, path in (
            (f"{site} v2 breakdown by page, visitors", breakdown + "&metrics=visitors"),
            (f"{site} v2 breakdown by page, pageviews", breakdown + "&metrics=pageviews"),
            (f"{site} v2 breakdown by page, default metrics", breakdown),
            (f"{site} v1 stats of the day", f"/api/reporting/stats?site_id={site}&date={day}"),
        ):
            found.append(Target(name, "day", [(path, ())] * (WARMUP + requests)))
    return found


async def measure(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    context = [await server_versions(args.database_url, args.redis_url)]
    lines: list[str] = []
    async with bench_redis(args.redis_url, PREFIX), bench_database(args.database_url, DATABASE) as url:
        seconds = await load(url, args.paths)
        context.append(f"stored {args.paths:,} + 2,000 events through the writer's merge in {seconds:.1f} s")
        context.append(await keep_the_day(url))
        api = analytics_service("api", database_url=url, redis_url=args.redis_url, prefix=PREFIX)
        with api:
            for target in targets(args.requests):
                sample = await over_http(api.port, target, args.seconds)
                p99 = summary_ms(sample.seconds)["p99"]
                verdict = (
                    f" (target <= {TARGET_P99_MS:g} ms: {met(p99 <= TARGET_P99_MS)})" if "tied" in target.name else ""
                )
                lines.append(f"{target.name}: {sample.line()}{verdict}")
                print(lines[-1], flush=True)
    return lines, context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help=f"server to create {DATABASE} on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--paths", type=int, default=200_000, help="tied paths (and events) of the tied site-day")
    parser.add_argument("--requests", type=int, default=300, help="measured requests per target, at most")
    parser.add_argument("--seconds", type=float, default=15, help="time per target, at most")
    args = parser.parse_args()
    with Interference() as interference:
        lines, context = uvloop.run(measure(args))
    context += [
        f"per target: {WARMUP} warm-up requests, then up to {args.requests:,} measured or {args.seconds:g} s, one at a "
        "time on one connection; PostgreSQL settings as installed",
        *interference.lines(),
    ]
    record_result("v2 top-N with tied paths", lines, context=context)


if __name__ == "__main__":
    main()
