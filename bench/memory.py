"""Memory: the api's RSS under load, the writer's RSS with a large backlog, Redis bytes per queued event.

    python -m bench.memory [--duration 20] [--backlog 1000000] [--queue-events 1000000]

1. api role (`analytics serve --role api`): VmRSS sampled every 100 ms and VmHWM, idle and then during wrk runs at
   64 connections on the single-event and the 100-event batch endpoints (bench/ingest.py's wrk setup);
2. writer role: VmHWM while it drains a --backlog queue (bench/writer.py's fill and drain);
3. Redis: used_memory per queued record, with the api's record encoding (bench/queue_memory.py).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Final

from analytics.config import DEFAULTS
from analytics.queue.keys import QueueKeys
from bench import queue_memory
from bench.data import EventStream
from bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Interference,
    RssSampler,
    analytics_service,
    bench_database,
    bench_redis,
    delete_prefix,
    met,
    proc_status,
    server_versions,
)
from bench.ingest import BATCH_PATH, QUEUE_CAP, SINGLE_PATH, run_wrk
from bench.results import record_result
from bench.writer import drain, fill

PREFIX: Final = "bench-memory-roles"
DATABASE: Final = "bench_memory"


async def api_rss(database_url: str, args: argparse.Namespace) -> list[str]:
    async with bench_redis(args.redis_url, PREFIX) as client:
        env = {"ANALYTICS_QUEUE_MAX_LENGTH": str(QUEUE_CAP)}
        service = analytics_service(
            "api", database_url=database_url, redis_url=args.redis_url, prefix=PREFIX, extra_env=env
        )
        lines = []
        with service as api:
            idle = proc_status(api.pid).get("VmRSS", 0) / 1024
            peaks = []
            for name, path, batch in (
                ("single event", SINGLE_PATH, 0),
                (f"batch of {args.batch}", BATCH_PATH, args.batch),
            ):
                with RssSampler(api.pid) as rss:
                    run = await asyncio.to_thread(run_wrk, name, api.port, path, batch, args, args.duration, {})
                await delete_prefix(client, PREFIX)
                peaks.append(rss.hwm_mb)
                lines.append(
                    f"api RSS during wrk {name} ({run.requests_per_s:,.0f} req/s, {args.connections} connections, "
                    f"{args.duration:g} s): sampled peak {rss.peak_mb:.0f} MB, VmHWM {rss.hwm_mb:.0f} MB"
                )
            lines.insert(0, f"api RSS idle after start: {idle:.0f} MB")
            lines.append(f"api peak RSS under load {max(peaks):.0f} MB (target <= 100 MB: {met(max(peaks) <= 100)})")
    return lines


async def writer_rss(database_url: str, args: argparse.Namespace) -> list[str]:
    prefix = f"{PREFIX}-writer"
    keys = QueueKeys(prefix)
    async with bench_redis(args.redis_url, prefix) as client:
        await fill(client, keys, EventStream(1, args.backlog, 1), args.backlog, DEFAULTS.batch_size)
        result, _ = await drain(client, keys, args.backlog, database_url, args.database_url, args)
    return [
        f"writer ({args.lanes} lanes, batches of {args.batch_size:,}) draining a {args.backlog:,} backlog at "
        f"{result.rows_per_s:,.0f} rows/s: VmHWM {result.hwm_mb:.0f} MB (target <= 250 MB: {met(result.hwm_mb <= 250)})"
    ]


async def measure(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    context = [await server_versions(args.database_url, args.redis_url)]
    async with bench_database(args.database_url, DATABASE) as url:
        lines = await api_rss(url, args)
        lines += await writer_rss(url, args)
    per_event = await queue_memory.measure(args.redis_url, args.queue_events)
    lines.append(
        f"Redis bytes per queued event ({args.queue_events:,} events, INFO used_memory): {per_event:.1f} "
        f"(target <= 80: {met(per_event <= 80)})"
    )
    return lines, context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="server to create bench_memory on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--duration", type=float, default=20, help="seconds per wrk run (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--backlog", type=int, default=1_000_000, help="writer backlog (default: %(default)s)")
    parser.add_argument("--lanes", type=int, default=DEFAULTS.writer_concurrency)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--queue-events", type=int, default=1_000_000, help="records for the Redis measurement")
    args = parser.parse_args()
    with Interference() as interference:
        lines, context = asyncio.run(measure(args))
    context += [
        "RSS from /proc/<pid>/status; the writer's backlog is bench/data.py events of one day, in time order",
        *interference.lines(),
    ]
    record_result("memory", lines, context=context)


if __name__ == "__main__":
    main()
