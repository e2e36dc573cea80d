"""v1 stats when every path of a site-day ties on views (anyone can post random paths), before and after
migrations/0007.tie_order.sql, over real HTTP.

    python -m bench.tied_paths [--before /tmp/wt-before] [--paths 200000] [--requests 1000] [--seconds 15]

Loads rollups straight into a fresh bench database (stats read nothing else; the writer's merge would only take
longer to make the same rows): site `tied`, whose one day has --paths distinct random paths ('/' + md5) of one view
each; site `tied-long`, the same with every path behind a shared 300-character start, longer than the index's
64-character prefix (the case the prefix cannot break, measured so that its cost is known); and 300 normal sites over
--days days (paths per site as in bench/data.py, Zipf-like views). Then per target (the tied site-day and its
all-time, the same for tied-long, a normal site-day and a normal site's all-time, both drawn uniformly):
GET /api/reporting/stats against the api role (`analytics serve --role api`), one request at a time on one
keep-alive connection, latency as the client sees it; and the top-paths queries alone over asyncpg on one
connection, 0004's order (OLD_QUERIES) and this tree's (analytics/store/sql/stats.sql). Each target gets --requests
requests after WARMUP, or fewer when --seconds run out.

With --before TREE (a checkout of the previous commit: `git worktree add -f /tmp/wt-before HEAD`), the database is
migrated by that tree's migrations and its api measured first; then `analytics migrate` of this tree upgrades it
(timed: the index build over the loaded rows) and this tree's api is measured: the same rows, before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

import asyncpg
import uvloop

from analytics.store.queries import STATS
from bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Interference,
    analytics_service,
    bench_database,
    bench_redis,
    fmt_ms,
    met,
    migrate,
    server_versions,
    summary_ms,
    tree_description,
)
from bench.httpclient import build_request, connect
from bench.results import record_result

PREFIX: Final = "bench-tied-paths"
DATABASE: Final = "bench_tied_paths"
DAY: Final = date(2025, 11, 30)
WARMUP: Final = 20
TARGET_P99_MS: Final = 20.0
LONG_START: Final = "/" + "a" * 299

# The top-paths queries as 0004's index served them.
OLD_QUERIES: Final = {
    "day": "SELECT path, views FROM daily_path_views WHERE site_id = $1 AND day = $2 ORDER BY views DESC, path LIMIT 3",
    "all-time": "SELECT path, views FROM site_path_views WHERE site_id = $1 ORDER BY views DESC, path LIMIT 3",
}
NEW_QUERIES: Final = {"day": STATS["day_top_paths"], "all-time": STATS["all_time_top_paths"]}

LOAD_SQL: Final = (
    """
    INSERT INTO daily_path_views (site_id, day, path_md5, path, views)
    SELECT site_id, $1, md5(path)::uuid, path, 1
    FROM (SELECT 'tied' AS site_id, '/' || md5(n::text) AS path FROM generate_series(1, $2) AS n
          UNION ALL
          SELECT 'tied-long', $3 || '/' || md5(n::text) FROM generate_series(1, $2) AS n) AS paths
    """,
    """
    INSERT INTO daily_path_views (site_id, day, path_md5, path, views)
    SELECT site_id, day, md5(path)::uuid, path, views
    FROM (SELECT 'site-' || lpad(rank::text, 4, '0') AS site_id, $1::date - back AS day,
                 CASE WHEN n = 0 THEN '/' ELSE '/' || (ARRAY['blog', 'docs', 'shop'])[1 + n % 3] || '/page-' || n END
                     AS path,
                 5000 / rank / (n + 1) AS views
          FROM generate_series(1, 300) AS rank, generate_series(0, $2 - 1) AS back,
               LATERAL generate_series(0, greatest(20, 2000 / rank) - 1) AS n) AS rows
    WHERE views > 0
    """,
)
# Totals only decide between 200 and 404 here: users are not what is measured.
TOTALS_SQL: Final = """
INSERT INTO site_path_views (site_id, path_md5, path, views)
SELECT site_id, path_md5, min(path), sum(views) FROM daily_path_views GROUP BY site_id, path_md5;
INSERT INTO daily_totals (site_id, day, views, users)
SELECT site_id, day, sum(views), 0 FROM daily_path_views GROUP BY 1, 2;
INSERT INTO site_totals (site_id, views, users) SELECT site_id, sum(views), 0 FROM daily_totals GROUP BY 1;
ANALYZE;
"""


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "day" or "all-time": which top-paths query it runs
    requests: list[tuple[str, tuple[Any, ...]]]  # (HTTP path and query string, the top-paths query's arguments)


@dataclass(frozen=True)
class Sample:
    """Latencies of one target, in seconds."""

    seconds: list[float]

    def line(self) -> str:
        summary = summary_ms(self.seconds)
        return f"p50 {fmt_ms(summary['p50'])}, p99 {fmt_ms(summary['p99'])} ({len(self.seconds)} requests)"


async def load(url: str, paths: int, days: int) -> str:
    """The rows stats read; returns how many there are."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(LOAD_SQL[0], DAY, paths, LONG_START)
        await connection.execute(LOAD_SQL[1], DAY, days)
        await connection.execute(TOTALS_SQL)
        daily = await connection.fetchval("SELECT count(*) FROM daily_path_views")
        site = await connection.fetchval("SELECT count(*) FROM site_path_views")
    finally:
        await connection.close()
    return f"daily_path_views {daily:,} rows, site_path_views {site:,} rows"


async def targets(url: str, paths: int, count: int, seed: int) -> list[Target]:
    connection = await asyncpg.connect(url)
    try:
        days = await connection.fetch("SELECT site_id, day FROM daily_totals WHERE site_id LIKE 'site-%'")
        sites = await connection.fetch("SELECT site_id FROM site_totals WHERE site_id LIKE 'site-%'")
    finally:
        await connection.close()
    draw = random.Random(seed)
    total = WARMUP + count
    found = []
    for site in ("tied", "tied-long"):
        found += [
            Target(f"{site} day ({paths:,} paths)", "day", [(day_url(site, DAY), (site, DAY))] * total),
            Target(f"{site} all-time", "all-time", [(all_time_url(site), (site,))] * total),
        ]
    found += [
        Target(
            "normal site-day",
            "day",
            [
                (day_url(row["site_id"], row["day"]), (row["site_id"], row["day"]))
                for row in draw.choices(days, k=total)
            ],
        ),
        Target(
            "normal all-time",
            "all-time",
            [(all_time_url(row["site_id"]), (row["site_id"],)) for row in draw.choices(sites, k=total)],
        ),
    ]
    return found


def day_url(site_id: str, day: date) -> str:
    return f"/api/reporting/stats?site_id={site_id}&date={day.isoformat()}"


def all_time_url(site_id: str) -> str:
    return f"/api/reporting/stats?site_id={site_id}"


async def over_http(port: int, target: Target, seconds: float) -> Sample:
    """Sequential GETs on one keep-alive connection; the first WARMUP are not counted."""
    connection = await connect("127.0.0.1", port)
    latencies: list[float] = []
    deadline = float("inf")
    try:
        for index, (path, _) in enumerate(target.requests):
            if index == WARMUP:
                deadline = time.monotonic() + seconds
            raw = build_request("GET", path)
            started = time.perf_counter()
            status, body = await connection.request(raw)
            elapsed = time.perf_counter() - started
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
            if index >= WARMUP:
                latencies.append(elapsed)
            if time.monotonic() > deadline:
                break
    finally:
        connection.close()
    return Sample(latencies)


async def query_alone(url: str, sql: str, target: Target, seconds: float) -> Sample:
    """The top-paths query by itself, prepared as the api's pool prepares it, one execution at a time."""
    connection = await asyncpg.connect(url)
    latencies: list[float] = []
    deadline = float("inf")
    try:
        for index, (_, arguments) in enumerate(target.requests):
            if index == WARMUP:
                deadline = time.monotonic() + seconds
            started = time.perf_counter()
            await connection.fetch(sql, *arguments)
            if index >= WARMUP:
                latencies.append(time.perf_counter() - started)
            if time.monotonic() > deadline:
                break
    finally:
        await connection.close()
    return Sample(latencies)


async def explain(url: str, targets: Sequence[Target], queries: dict[str, str]) -> list[str]:
    """What each tied target's query reads: rows out of its scans, and the server's execution time."""
    connection = await asyncpg.connect(url)
    found = []
    try:
        for target in targets:
            if not target.name.startswith("tied"):
                continue
            raw = await connection.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {queries[target.kind]}", *target.requests[0][1]
            )
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
            found.append(
                f"{target.name}: {rows_read(plan['Plan']):,} rows read, {plan['Execution Time']:.2f} ms "
                f"({', '.join(sorted(scans(plan['Plan'])))})"
            )
    finally:
        await connection.close()
    return found


def rows_read(plan: dict[str, Any]) -> int:
    children = plan.get("Plans", [])
    if not children:
        return int(plan["Actual Rows"] * plan["Actual Loops"])
    return sum(rows_read(child) for child in children)


def scans(plan: dict[str, Any]) -> set[str]:
    found = (
        {f"{plan['Node Type']} on {plan.get('Index Name', plan.get('Relation Name'))}"}
        if "Plans" not in plan
        else set()
    )
    for child in plan.get("Plans", []):
        found |= scans(child)
    return found


async def index_size(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        size = await connection.fetchval("SELECT pg_relation_size('daily_path_views_top')")
    finally:
        await connection.close()
    return f"{size / 2**20:,.0f} MB"


async def measure_phase(
    label: str, url: str, args: argparse.Namespace, found: list[Target], tree: Path | None
) -> tuple[dict[str, Sample], list[str]]:
    """One tree's api over HTTP, then its top-paths queries (and, after, the old ones too) alone over asyncpg."""
    http: dict[str, Sample] = {}
    api = analytics_service("api", database_url=url, redis_url=args.redis_url, prefix=PREFIX, tree=tree)
    with api:
        for target in found:
            http[target.name] = await over_http(api.port, target, args.seconds)
            print(f"{label}, HTTP, {target.name}: {http[target.name].line()}", flush=True)
    lines = [f"{label}, GET /api/reporting/stats over HTTP: " + "; ".join(f"{n} {s.line()}" for n, s in http.items())]
    query_sets = [("0004's order", OLD_QUERIES)] + ([("0007's order", NEW_QUERIES)] if tree is None else [])
    for name, queries in query_sets:
        alone = {target.name: await query_alone(url, queries[target.kind], target, args.seconds) for target in found}
        lines.append(
            f"{label}, the top-paths query alone ({name}) over asyncpg: "
            + "; ".join(f"{n} {s.line()}" for n, s in alone.items())
        )
        lines += [f"{label}, EXPLAIN ANALYZE ({name}) {line}" for line in await explain(url, found, queries)]
    lines.append(f"{label}: daily_path_views_top {await index_size(url)}")
    return http, lines


async def measure(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    before_tree = Path(args.before) if args.before else None
    context = [await server_versions(args.database_url, args.redis_url)]
    if before_tree is not None:
        context.append(f"before: {tree_description(before_tree)}")
    lines: list[str] = []
    async with (
        bench_redis(args.redis_url, PREFIX),
        bench_database(args.database_url, DATABASE, tree=before_tree) as url,
    ):
        started = time.perf_counter()
        loaded = await load(url, args.paths, args.days)
        context.append(f"loaded {loaded} in {time.perf_counter() - started:.1f} s, then ANALYZE")
        found = await targets(url, args.paths, args.requests, args.seed)
        if before_tree is not None:
            _, before_lines = await measure_phase("before", url, args, found, before_tree)
            lines += before_lines
            started = time.perf_counter()
            await asyncio.to_thread(migrate, url)
            lines.append(f"upgrade: `analytics migrate` of this tree took {time.perf_counter() - started:.1f} s")
        after, after_lines = await measure_phase("after", url, args, found, None)
        lines += after_lines
    for target in (target for target in found if target.name.startswith("tied ")):
        p99 = summary_ms(after[target.name].seconds)["p99"]
        lines.append(
            f"after, {target.name}: p99 {fmt_ms(p99)} (target <= {TARGET_P99_MS:g} ms: {met(p99 <= TARGET_P99_MS)})"
        )
    return lines, context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="a checkout of the previous commit (a git worktree), measured first")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help=f"server to create {DATABASE} on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--paths", type=int, default=200_000, help="tied paths of the tied site-days")
    parser.add_argument("--days", type=int, default=30, help="days of the normal sites")
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per target, at most")
    parser.add_argument("--seconds", type=float, default=15, help="time per target, at most")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.before:
        args.before = str(Path(args.before).resolve())
    with Interference() as interference:
        lines, context = uvloop.run(measure(args))
    context += [
        f"per target: {WARMUP} warm-up requests, then up to {args.requests:,} measured or {args.seconds:g} s, one at a "
        "time on one connection; the api process ran throughout each phase (warm pool); PostgreSQL settings as "
        "installed",
        *interference.lines(),
    ]
    record_result("v1 stats with tied paths", lines, context=context)


if __name__ == "__main__":
    main()
