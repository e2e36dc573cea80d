"""Ingest A/B: the api role of two source trees on the same single-event load, interleaved in one run.

    python -m bench.ingest_ab --before /tmp/wt-before [--rounds 3] [--duration 8] [--connections 64]

"before" is another checkout (e.g. `git worktree add /tmp/wt-before <commit>`), run from its own directory with
PYTHONPATH set to it, on its own database migrated by its own migrations; "after" is this tree. Both get the same
requests (bench/wrk/ingest.lua, shape `browser`): POST /api/ingestion/event with a page view as a browser's tracker
sends it (url with UTM parameters, referrer, timestamp) and a desktop Chrome User-Agent header, so the after tree's
enrichment runs in full (not dropped as a bot); a tree that does not know the extra fields ignores them. The raw
ASGI no-op (bench/noop.py, the service's uvicorn config) is the ceiling. Each run follows a short warm-up; rounds
interleave the targets; the median run of each is reported, with the after/before ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Final

from bench import ingest
from bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Interference,
    RssSampler,
    analytics_service,
    bench_database,
    bench_redis,
    delete_prefix,
    fmt_ms,
    redis_pid,
    server_versions,
    tree_description,
)
from bench.ingest import (
    QUEUE_CAP,
    SINGLE_PATH,
    WARMUP_S,
    Target,
    WrkRun,
    noop_service,
    queue_length,
    run_wrk,
    wrk_context,
)
from bench.results import record_result

SHAPE: Final = "browser"  # bench/wrk/ingest.lua's page views as a browser's tracker sends them
PREFIX: Final = ingest.PREFIX  # queue_length reads this prefix; the targets run one at a time
DATABASE_AFTER: Final = "bench_ingest_ab_after"
DATABASE_BEFORE: Final = "bench_ingest_ab_before"


async def measure(args: argparse.Namespace) -> tuple[list[WrkRun], list[str]]:
    before_tree = Path(args.before)
    context = [await server_versions(args.database_url, args.redis_url), f"before: {tree_description(before_tree)}"]
    async with (
        bench_redis(args.redis_url, PREFIX) as client,
        bench_database(args.database_url, DATABASE_AFTER) as after_url,
        bench_database(args.database_url, DATABASE_BEFORE, tree=before_tree) as before_url,
    ):
        redis_server = await redis_pid(client)
        env = {"ANALYTICS_QUEUE_MAX_LENGTH": str(QUEUE_CAP)}
        after = analytics_service("api", database_url=after_url, redis_url=args.redis_url, prefix=PREFIX, extra_env=env)
        before = analytics_service(
            "api", database_url=before_url, redis_url=args.redis_url, prefix=PREFIX, extra_env=env, tree=before_tree
        )
        noop = noop_service("service")
        with noop, before, after:
            targets = [
                Target("ASGI no-op, service's uvicorn config", noop, SINGLE_PATH, 0, {"server": noop.pid}),
                Target("before, single event", before, SINGLE_PATH, 0, {"api": before.pid, "redis": redis_server}),
                Target("after, single event", after, SINGLE_PATH, 0, {"api": after.pid, "redis": redis_server}),
            ]
            for round_number in range(1, args.rounds + 1):
                for target in targets:
                    label = f"{target.name}, round {round_number}/{args.rounds}"
                    port, path = target.service.port, target.path
                    run_wrk("warm-up", port, path, 0, args, WARMUP_S, {}, progress=False, shape=SHAPE)
                    await delete_prefix(client, PREFIX)
                    with RssSampler(target.service.pid) as rss:
                        run = run_wrk(label, port, path, 0, args, args.duration, target.watch, shape=SHAPE)
                    run.name = target.name
                    run.rss_peak_mb = rss.peak_mb
                    if target.service is not noop:
                        run.queued = await queue_length(client)
                        await delete_prefix(client, PREFIX)
                    target.runs.append(run)
    return [target.median() for target in targets], context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the other source tree (a git worktree)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="server to create bench_ingest_ab_* on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--duration", type=float, default=8, help="seconds per measured run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each target, interleaved (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default: %(default)s)")
    args = parser.parse_args()
    started = time.monotonic()
    with Interference() as interference:
        args.before = str(Path(args.before).resolve())
        runs, context = asyncio.run(measure(args))
    noop, before, after = runs
    ratio = after.requests_per_s / before.requests_per_s
    lines = [run.line() for run in runs]
    lines += [
        f"after / before: {ratio:.2f}x req/s; p50 {fmt_ms(before.latency_ms(50))} → {fmt_ms(after.latency_ms(50))}, "
        f"p99 {fmt_ms(before.latency_ms(99))} → {fmt_ms(after.latency_ms(99))}",
        f"server CPU per request: before {before.cores['api'] / before.requests_per_s * 1e6:.1f} µs, after "
        f"{after.cores['api'] / after.requests_per_s * 1e6:.1f} µs",
        f"after / no-op: {after.requests_per_s / noop.requests_per_s:.2f}x; before / no-op: "
        f"{before.requests_per_s / noop.requests_per_s:.2f}x",
        f"api RSS peak under load: before {before.rss_peak_mb:.0f} MB, after {after.rss_peak_mb:.0f} MB",
    ]
    context += [
        *wrk_context(
            args,
            WARMUP_S,
            "body: page_view with url (UTM parameters), referrer, timestamp; User-Agent: desktop Chrome",
            started,
        ),
        *interference.lines(),
    ]
    record_result("ingest A/B, single event, before vs after", lines, context=context)


if __name__ == "__main__":
    main()
