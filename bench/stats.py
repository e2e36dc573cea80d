"""Stats latency against the number of stored events: 100k, 1M and 10M events, day and all-time queries over HTTP.

    python -m bench.stats [--levels 100000,1000000,10000000] [--requests 1000]

Loads each level's events into a fresh bench database through the writer's own code path (analytics.store.events.prepare
and merge, in-process, batches of ANALYTICS_BATCH_SIZE on two connections, like the writer's two lanes), so the
rollups are exactly what the writer would keep. Levels are cumulative; each level's new events come from
bench/data.py in time order over the same 90 days (300 sites, Zipf-like traffic, up to 2,000 paths and 200,000
visitors per site). After each level, against the api role (`analytics serve --role api`) over real HTTP, one
request at a time on one keep-alive connection: --requests GET /api/reporting/stats?site_id=…&date=… for (site, day)
pairs drawn uniformly from those that have page views, and --requests all-time (no date, the contract's "all-time")
for sites drawn uniformly; latency as the client sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import asyncpg
import uvloop
from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

from analytics.config import DEFAULTS
from analytics.events.record import Event, now_ms
from analytics.store.events import merge, prepare
from analytics.store.partitions import Partitions
from analytics.store.queries import STATS
from bench.data import DAYS, EventStream
from bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Interference,
    analytics_service,
    bench_database,
    bench_redis,
    curve_from_samples,
    fmt_ms,
    foreign_activity,
    machine_busy,
    met,
    plot_percentile_curves,
    server_versions,
    summary_ms,
)
from bench.httpclient import build_request, connect
from bench.results import plot_path, record_result

PREFIX: Final = "bench-stats"
DATABASE: Final = "bench_stats"
LANES: Final = 2
WARMUP_REQUESTS: Final = 200
KINDS: Final = ("day", "all-time")
BUSIEST: Final = 10


@dataclass
class Level:
    events: int
    load_rows_per_s: float
    table_sizes: str
    latencies: dict[str, list[float]]
    not_found: dict[str, int]
    busiest: dict[str, list[float]]  # latencies of the requests for the BUSIEST sites with the most page views
    explained: list[str]
    machine: str


class Batches(Protocol):
    def batches(self, count: int, size: int) -> Iterator[list[Event]]: ...


async def load(database_url: str, stream: Batches, count: int, batch_size: int) -> tuple[float, int]:
    """Merge `count` events in batches, on LANES connections; returns (rows/s, rows inserted)."""
    connections = [await asyncpg.connect(database_url) for _ in range(LANES)]
    for connection in connections:
        await prepare(connection)
    accepted = now_ms()
    batches: Iterator[list[Event]] = stream.batches(count, batch_size)
    inserted = 0
    bar = tqdm(total=count, desc=f"loading {count:,} events", unit="ev", unit_scale=True, leave=False)

    async def lane(connection: asyncpg.Connection) -> None:
        nonlocal inserted
        partitions = Partitions()  # the months' partitions, made as the writer makes them
        for records in batches:
            for event in records:
                event.accepted_ms = accepted
            await partitions.before_batch(connection, records)
            inserted += await merge(connection, records)
            bar.update(len(records))

    started = time.perf_counter()
    try:
        await asyncio.gather(*(lane(connection) for connection in connections))
    finally:
        bar.close()
        for connection in connections:
            await connection.close()
    return count / (time.perf_counter() - started), inserted


async def targets(database_url: str, count: int, seed: int) -> tuple[dict[str, list[tuple[str, str]]], set[str]]:
    """(query string, site) pairs: (site, day) pairs and sites drawn uniformly from those with page views; and the
    BUSIEST sites with the most page views."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("ANALYZE")
        days = await connection.fetch("SELECT site_id, day FROM daily_totals WHERE views > 0")
        sites = await connection.fetch("SELECT site_id FROM site_totals WHERE views > 0")
        busiest = await connection.fetch("SELECT site_id FROM site_totals ORDER BY views DESC LIMIT $1", BUSIEST)
    finally:
        await connection.close()
    draw = random.Random(seed)
    day_rows = draw.choices(days, k=count + WARMUP_REQUESTS)
    site_rows = draw.choices(sites, k=count + WARMUP_REQUESTS)
    queries = {
        "day": [
            (f"/api/reporting/stats?site_id={row['site_id']}&date={row['day'].isoformat()}", row["site_id"])
            for row in day_rows
        ],
        "all-time": [(f"/api/reporting/stats?site_id={row['site_id']}", row["site_id"]) for row in site_rows],
    }
    return queries, {row["site_id"] for row in busiest}


async def explain_busiest(database_url: str) -> list[str]:
    """EXPLAIN ANALYZE of the top-paths queries for the busiest site (and its busiest day): what the tail pays."""
    connection = await asyncpg.connect(database_url)
    try:
        site, day = await connection.fetchrow("SELECT site_id, day FROM daily_totals ORDER BY views DESC LIMIT 1") or (
            "",
            None,
        )
        found = []
        for label, sql, query_args in (
            ("day", STATS["day_top_paths"], (site, day)),
            ("all-time", STATS["all_time_top_paths"], (site,)),
        ):
            raw = await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *query_args)
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
            rows = _scanned_rows(plan["Plan"])
            buffers = plan["Plan"].get("Shared Hit Blocks", 0), plan["Plan"].get("Shared Read Blocks", 0)
            found.append(
                f"{label} top paths of {site}{'' if label != 'day' else f' on {day}'}: {rows:,} rows sorted, "
                f"{plan['Execution Time']:.2f} ms, buffers hit {buffers[0]:,} / read {buffers[1]:,}"
            )
    finally:
        await connection.close()
    return found


def _scanned_rows(plan: dict[str, Any]) -> int:
    """Rows the scan under the sort produced."""
    children = plan.get("Plans", [])
    if not children:
        return int(plan.get("Actual Rows", 0))
    return sum(_scanned_rows(child) for child in children)


async def table_sizes(database_url: str) -> str:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            """
            SELECT relname, n_live_tup, pg_total_relation_size(relid) AS bytes FROM pg_stat_user_tables
            WHERE relname IN ('events', 'daily_totals', 'daily_path_views', 'daily_users', 'site_totals',
                              'site_path_views', 'site_users')
            ORDER BY relname
            """
        )
    finally:
        await connection.close()
    return ", ".join(f"{row['relname']} {row['n_live_tup']:,} rows / {row['bytes'] / 2**20:,.0f} MB" for row in rows)


async def probe(port: int, queries: list[tuple[str, str]]) -> tuple[list[tuple[float, str]], int]:
    """Sequential requests on one keep-alive connection; returns (latency, site) after warm-up and the 404 count."""
    connection = await connect("127.0.0.1", port)
    latencies: list[tuple[float, str]] = []
    not_found = 0
    try:
        for index, (path, site) in enumerate(queries):
            raw = build_request("GET", path)
            started = time.perf_counter()
            status, body = await connection.request(raw)
            elapsed = time.perf_counter() - started
            if status == 404:
                not_found += 1
            elif status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
            if index >= WARMUP_REQUESTS:
                latencies.append((elapsed, site))
    finally:
        connection.close()
    return latencies, not_found


async def measure(args: argparse.Namespace) -> tuple[list[Level], list[str]]:
    context = [await server_versions(args.database_url, args.redis_url)]
    connection = await asyncpg.connect(args.database_url)
    args.shared_buffers = await connection.fetchval("SHOW shared_buffers")
    await connection.close()
    levels: list[Level] = []
    async with bench_redis(args.redis_url, PREFIX), bench_database(args.database_url, DATABASE) as url:
        api = analytics_service("api", database_url=url, redis_url=args.redis_url, prefix=PREFIX)
        with api:
            loaded = 0
            for index, level in enumerate(args.levels):
                stream = EventStream(args.seed + index, level - loaded, DAYS)
                rate, _ = await load(url, stream, level - loaded, args.batch_size)
                loaded = level
                queries, busiest = await targets(url, args.requests, args.seed + index)
                latencies: dict[str, list[float]] = {}
                busy_sites: dict[str, list[float]] = {}
                not_found: dict[str, int] = {}
                busy_before, started = machine_busy(), time.monotonic()
                for kind in KINDS:
                    measured, not_found[kind] = await probe(api.port, queries[kind])
                    latencies[kind] = [latency for latency, _ in measured]
                    busy_sites[kind] = [latency for latency, site in measured if site in busiest]
                machine = (
                    f"machine busy {(machine_busy() - busy_before) / (time.monotonic() - started):.2f} cores during "
                    f"the requests (client, api and PostgreSQL take turns: under 1 core when alone); other processes: "
                    f"{foreign_activity()}"
                )
                explained = await explain_busiest(url)
                level_result = Level(
                    level, rate, await table_sizes(url), latencies, not_found, busy_sites, explained, machine
                )
                levels.append(level_result)
                print(level_line(level_result), flush=True)
    return levels, context


def level_line(level: Level) -> str:
    parts = []
    for kind in KINDS:
        summary = summary_ms(level.latencies[kind])
        parts.append(
            f"{kind} p50 {fmt_ms(summary['p50'])}, p99 {fmt_ms(summary['p99'])}, max {fmt_ms(summary['max'])}"
            + (f" ({level.not_found[kind]} answered 404)" if level.not_found[kind] else "")
        )
    busiest = ", ".join(
        f"{kind} p99 {fmt_ms(summary_ms(level.busiest[kind])['p99'])} ({len(level.busiest[kind])} requests)"
        for kind in KINDS
    )
    return (
        f"{level.events:,} events (loaded through the writer's merge at {level.load_rows_per_s:,.0f} rows/s): "
        + "; ".join(parts)
        + f"; the {BUSIEST} busiest sites alone: {busiest}"
    )


def plot_growth(levels: list[Level]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    growth = plot_path("stats-latency-vs-events")
    figure, axis = plt.subplots(figsize=(7, 4.5))
    counts = [level.events for level in levels]
    for kind in KINDS:
        for key, style in (("p50", "--"), ("p99", "-")):
            values = [summary_ms(level.latencies[kind])[key] for level in levels]
            axis.plot(counts, values, style, marker="o", label=f"{kind} {key}")
    axis.axhline(5, color="grey", linewidth=0.8, linestyle=":", label="target p99 5 ms")
    axis.set_xscale("log")
    axis.set_xlabel("events stored")
    axis.set_ylabel("GET /api/reporting/stats latency (ms)")
    axis.set_ylim(bottom=0)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    axis.set_title("stats latency against stored events (HTTP, one connection)")
    figure.tight_layout()
    figure.savefig(growth, dpi=110)
    plt.close(figure)

    distributions = plot_percentile_curves(
        plot_path("stats-latency"),
        "GET /api/reporting/stats latency distribution per level",
        [
            (kind, {f"{level.events:,} events": curve_from_samples(level.latencies[kind]) for level in levels})
            for kind in KINDS
        ],
    )
    return [growth, distributions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="server to create bench_stats on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--levels",
        type=lambda text: sorted(int(part) for part in text.split(",")),
        default=[100_000, 1_000_000, 10_000_000],
        help="cumulative event counts (default: 100000,1000000,10000000)",
    )
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per kind and level")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="events per merge")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with Interference() as interference:
        levels, context = uvloop.run(measure(args))
    first, last = levels[0], levels[-1]
    lines = [level_line(level) for level in levels]
    for kind in KINDS:
        small, large = summary_ms(first.latencies[kind]), summary_ms(last.latencies[kind])
        growth = large["p99"] / small["p99"]
        steps = ", ".join(
            f"{after.events:,}/{before.events:,} "
            f"{summary_ms(after.latencies[kind])['p99'] / summary_ms(before.latencies[kind])['p99']:.2f}x"
            for before, after in itertools.pairwise(levels)
        )
        lines.append(
            f"{kind}: p99 {last.events:,}/{first.events:,} growth {growth:.2f}x (p50 "
            f"{large['p50'] / small['p50']:.2f}x; p99 level to level: {steps}) (target <= 1.5x: "
            f"{met(growth <= 1.5)}); p99 at {last.events:,} {fmt_ms(large['p99'])} (target <= 5 ms: "
            f"{met(large['p99'] <= 5)})"
        )
    for level in levels:
        lines += [
            f"at {level.events:,}: tables {level.table_sizes}",
            f"at {level.events:,}: {level.machine}",
            *[f"at {level.events:,}: EXPLAIN ANALYZE {line}" for line in level.explained],
        ]
    context += [
        f"{args.requests:,} measured requests per kind and level after {WARMUP_REQUESTS} warm-up requests; "
        "ANALYZE after each load; the api process ran throughout (warm pool); PostgreSQL settings as installed "
        f"(shared_buffers {args.shared_buffers})",
        *interference.lines(),
    ]
    record_result(
        "stats latency against event count",
        lines,
        context=context,
        plots=plot_growth(levels),
    )


if __name__ == "__main__":
    main()
