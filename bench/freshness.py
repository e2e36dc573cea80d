"""Freshness: how long after its 202 an event shows in the stats, under a steady open-loop load.

    python -m bench.freshness [--rate 5000] [--duration 60] [--samples-per-s 20] [--layout separate|all]

Runs the api and the writer (two processes by default, or one `--role all`) on a fresh bench database and sends
--rate single events per second to POST /api/ingestion/event on a schedule (open loop: a request's latency counts
from the time it was due, so a slow server cannot slow the generator down), each event with its own user id, over
64 keep-alive connections of bench/httpclient.py. --samples-per-s of those events each go to a site of their own;
once such an event is answered 202, GET /api/reporting/stats?site_id=<its site>&date=<its day> is polled every
--poll-ms until it answers 200. Freshness = the first 200 minus the 202, in the client's monotonic clock.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import asyncpg
import msgspec
import uvloop
from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

from bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Interference,
    Service,
    analytics_service,
    bench_database,
    bench_redis,
    cpu_meter,
    curve_from_samples,
    fmt_ms,
    met,
    plot_percentile_curves,
    redis_pid,
    server_versions,
    summary_ms,
)
from bench.httpclient import Connection, build_request, connect
from bench.results import plot_path, record_result

PREFIX: Final = "bench-freshness"
DATABASE: Final = "bench_freshness"
INGEST_PATH: Final = "/api/ingestion/event"
# The service drops an event without a User-Agent as a bot's (202, never stored), as bench/wrk/ingest.lua notes.
USER_AGENT: Final = "analytics-bench/1"
VISIBLE_TIMEOUT_S: Final = 10.0
BACKGROUND_SITES: Final = 300

_encode = msgspec.json.Encoder().encode


@dataclass
class Outcome:
    acked: list[float] = field(default_factory=list)  # seconds from due time to 202, measured window only
    fresh: list[float] = field(default_factory=list)  # seconds from 202 to visible
    statuses: Counter[str] = field(default_factory=Counter)
    never_visible: int = 0
    accepted_total: int = 0
    measured_202: int = 0


class Pool:
    """Keep-alive connections handed out one request at a time; a broken one is replaced."""

    def __init__(self, port: int, size: int) -> None:
        self._port = port
        self._size = size
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self._size):
            self._idle.put_nowait(await connect("127.0.0.1", self._port))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        connection = await self._idle.get()
        try:
            return await connection.request(raw)
        except Exception:
            connection.close()
            connection = await connect("127.0.0.1", self._port)
            raise
        finally:
            self._idle.put_nowait(connection)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()


async def generate(port: int, args: argparse.Namespace) -> Outcome:
    loop = asyncio.get_running_loop()
    ingest = Pool(port, args.connections)
    polls = Pool(port, args.poll_connections)
    await ingest.open()
    await polls.open()
    outcome = Outcome()
    run = os.getpid()
    total = int(args.rate * (args.warmup + args.duration))
    sample_every = max(1, round(args.rate / args.samples_per_s))
    start = loop.time() + 0.2
    measured_from = start + args.warmup

    async def poll_until_visible(site: str, day: str, acked: float) -> None:
        raw = build_request("GET", f"/api/reporting/stats?site_id={site}&date={day}")
        while True:
            status, _ = await polls.request(raw)
            now = loop.time()
            if status == 200:
                outcome.fresh.append(now - acked)
                return
            if now - acked > VISIBLE_TIMEOUT_S:
                outcome.never_visible += 1
                return
            await asyncio.sleep(args.poll_ms / 1000)

    async def send(index: int, due: float) -> None:
        sample = index % sample_every == 0
        when = datetime.now(UTC)
        site = f"bench-fresh-{run}-{index}" if sample else f"bench-fresh-bg-{index % BACKGROUND_SITES}"
        event = {
            "site_id": site,
            "event_type": "page_view",
            "path": f"/page/{index % 50}",
            "user_id": f"u{run}-{index}",
            "timestamp": when.isoformat(),
        }
        try:
            status, _ = await ingest.request(
                build_request("POST", INGEST_PATH, body=_encode(event), user_agent=USER_AGENT)
            )
        except Exception as error:
            outcome.statuses[type(error).__name__] += 1
            return
        acked = loop.time()
        outcome.statuses[str(status)] += 1
        if status != 202:
            return
        outcome.accepted_total += 1
        if due >= measured_from:
            outcome.acked.append(acked - due)
            outcome.measured_202 += 1
            if sample:
                await poll_until_visible(site, when.date().isoformat(), acked)

    tasks: set[asyncio.Task[None]] = set()
    sent = 0
    with tqdm(total=round(args.warmup + args.duration), desc=f"{args.rate:,} events/s", unit="s", leave=False) as bar:
        while sent < total:
            now = loop.time()
            due = min(total, int((now - start) * args.rate) + 1) if now >= start else 0
            while sent < due:
                task = asyncio.create_task(send(sent, start + sent / args.rate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            bar.n = max(0, min(round(args.warmup + args.duration), int(now - start)))
            bar.refresh()
            await asyncio.sleep(0.001)
    if tasks:
        await asyncio.wait(tasks, timeout=VISIBLE_TIMEOUT_S + 5)
    ingest.close()
    polls.close()
    return outcome


async def wait_stored(database_url: str, expected: int, timeout_s: float = 60) -> int:
    """Rows in events once the writer has caught up (or the timeout passed)."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            stored: int = await connection.fetchval("SELECT count(*) FROM events")
            if stored >= expected or time.monotonic() > deadline:
                return stored
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


async def measure(args: argparse.Namespace) -> tuple[Outcome, dict[str, float], int, list[str]]:
    context = [await server_versions(args.database_url, args.redis_url)]
    async with bench_redis(args.redis_url, PREFIX) as client, bench_database(args.database_url, DATABASE) as url:
        services: list[Service] = []
        if args.layout == "all":
            services.append(analytics_service("all", database_url=url, redis_url=args.redis_url, prefix=PREFIX))
        else:
            services.append(analytics_service("api", database_url=url, redis_url=args.redis_url, prefix=PREFIX))
            services.append(analytics_service("writer", database_url=url, redis_url=args.redis_url, prefix=PREFIX))
        for service in services:
            service.start()
        try:
            pids = {service.name.removeprefix("analytics "): service.pid for service in services}
            pids["redis"] = await redis_pid(client)
            pids["generator (this process)"] = os.getpid()
            with cpu_meter(pids) as cores:
                outcome = await generate(services[0].port, args)
            stored = await wait_stored(url, outcome.accepted_total)
        finally:
            for service in services:
                service.__exit__()
    return outcome, cores, stored, context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="server to create bench_freshness on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--rate", type=int, default=5000, help="events per second (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=60, help="measured seconds (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds before measuring (default: %(default)s)")
    parser.add_argument("--samples-per-s", type=float, default=20, help="probed events per second")
    parser.add_argument("--poll-ms", type=float, default=10, help="stats polling interval (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--poll-connections", type=int, default=16)
    parser.add_argument("--layout", choices=["separate", "all"], default="separate", help="api and writer processes")
    args = parser.parse_args()
    with Interference() as interference:
        outcome, cores, stored, context = uvloop.run(measure(args))
    if not outcome.acked:
        raise SystemExit(f"no event was answered 202: {dict(outcome.statuses)}")
    fresh = summary_ms(outcome.fresh)
    acked = summary_ms(outcome.acked)
    achieved = outcome.measured_202 / args.duration
    statuses = ", ".join(f"{status}: {count:,}" for status, count in sorted(outcome.statuses.items()))
    lines = [
        f"sent {args.rate:,} events/s for {args.warmup:g} + {args.duration:g} s: {achieved:,.0f} events/s answered "
        f"202 in the measured window; answers {statuses}",
        f"202 latency from the due time: p50 {fmt_ms(acked['p50'])}, p99 {fmt_ms(acked['p99'])}, "
        f"p99.9 {fmt_ms(acked['p999'])}, max {fmt_ms(acked['max'])}",
        f"freshness (202 → visible in stats), {len(outcome.fresh):,} probed events: p50 {fmt_ms(fresh['p50'])}, "
        f"p99 {fmt_ms(fresh['p99'])}, max {fmt_ms(fresh['max'])}; never visible within {VISIBLE_TIMEOUT_S:g} s: "
        f"{outcome.never_visible}",
        f"freshness p99 (target <= 1 s: {met(fresh['p99'] <= 1000 and outcome.never_visible == 0)})",
        f"stored after the run: {stored:,} rows for {outcome.accepted_total:,} events answered 202",
        "cores used: " + ", ".join(f"{name} {value:.2f}" for name, value in cores.items()),
    ]
    plot = plot_percentile_curves(
        plot_path("freshness"),
        f"{args.rate:,} events/s open loop, {args.duration:g} s, api and writer: {args.layout}",
        [
            ("202 → visible in stats", {f"{len(outcome.fresh):,} probes": curve_from_samples(outcome.fresh)}),
            ("202 latency (from due time)", {f"{len(outcome.acked):,} events": curve_from_samples(outcome.acked)}),
        ],
    )
    context += [
        f"api and writer: {args.layout} (`analytics serve --role …`, writer defaults: 2 lanes, batches of 5,000, "
        "100 ms flush interval); generator and probes in one uvloop process (bench/httpclient.py), "
        f"{args.connections} ingest + {args.poll_connections} probe connections, probes polled every "
        f"{args.poll_ms:g} ms (a freshness figure is late by up to one poll interval plus one stats round trip)",
        "generator, api, writer, Redis and PostgreSQL share the 2 cores",
        *interference.lines(),
    ]
    record_result("freshness", lines, context=context, plots=[plot])


if __name__ == "__main__":
    main()
