"""Reporting API v2 latency against the number of stored events: 1M and 10M events, eight query kinds over HTTP.

    python -m bench.reports [--levels 1000000,10000000] [--requests 500] [--budget 30]

Loads each level's events into a fresh bench database through the writer's own code path (analytics.store.events.prepare
and merge, in-process, batches of ANALYTICS_BATCH_SIZE on two connections, like the writer's two lanes), so `events`
and the `visits` the merge rebuilds are exactly what the writer would keep; the load's rows/s is the writer's merge
with visits. Levels are cumulative; each level's new events come from bench/data.py's VisitStream over the same 90
days ending 2025-11-30 (300 sites with Zipf-like traffic, visitors making visits of 1-8 events, every enriched
dimension filled). After each level, VACUUM ANALYZE (what autovacuum does in time) and the distinct keeper's pass
over the loaded days (what the writer role's keeper does as each day ends; its time is recorded); then, against the
api role (`analytics serve --role api`) over real HTTP, one request at a time on one keep-alive connection, latency
as the client sees it, for each kind (KINDS: a 30-day aggregate with visit metrics, a 30-day daily time series,
top-10 breakdowns by path, source and country, a 12-month monthly time series in Asia/Kolkata, pages for
country==DE, live visitors) and each group of sites: (a) drawn uniformly from the
300, (b) drawn from the BUSIEST sites with the most page views. `date` is 2025-11-30, so every period covers the
data. Each (kind, group) gets warm-up requests, then up to --requests measured ones or --budget seconds, whichever
ends first (a 503 is the service's 10-second deadline: counted, and kept in the latencies as the wait it was).

Realtime counts the visitors of the last five minutes of the wall clock, which the stored 2025 data never reaches:
before the realtime requests, a live tail of VisitStream events over the last LIVE_MINUTES minutes, at the level's
average rate, is merged the same way.

Then, on the busiest site, EXPLAIN (ANALYZE, BUFFERS) of every statement each kind runs, built by the service's own
code (analytics.stats.reports): time, rows read from events and visits, buffers, spills, JIT; the same for the
aggregate on the median site, and how many heap pages hold each one's 30 days of events. For the slowest kind also
its costliest plan nodes, its time with jit off, and its plan as a prepared statement after PREPARED_RUNS runs for
other sites (the service's asyncpg prepares each statement once per connection, and PostgreSQL may switch a prepared
statement to a generic plan after five runs), against forced generic and custom plans.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import asyncpg
import uvloop

from analytics.config import DEFAULTS
from analytics.events.contract import epoch_microseconds
from analytics.events.record import now_ms
from analytics.stats import reports
from analytics.stats.cells import on_cell_grid
from analytics.stats.keeper import keep_past_days
from analytics.stats.params import parse_report_query
from analytics.stats.periods import buckets
from analytics.store.connect import create_pool
from analytics.store.events import merge, prepare
from analytics.store.queries import REPORTS
from bench.data import DAYS, END, VisitStream
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
from bench.stats import load

PREFIX: Final = "bench-reports"
DATABASE: Final = "bench_reports"
LANES: Final = 2
BUSIEST: Final = 10
WARMUP_REQUESTS: Final = 20
WARMUP_S: Final = 5.0
MIN_MEASURED: Final = 3
LIVE_MINUTES: Final = 10
PREPARED_RUNS: Final = 10  # runs of a prepared statement before the busiest site's (PostgreSQL decides after 5)
ANCHOR: Final = (END - timedelta(days=1)).date().isoformat()  # the data's last day: 2025-11-30
GROUPS: Final = ("uniform", "busiest")
THIRTY_DAYS: Final = {"period": "30d", "date": ANCHOR}


@dataclass(frozen=True)
class Kind:
    """One query kind: its endpoint and parameters (besides site_id), and the issue's targets for it."""

    name: str
    endpoint: str
    params: dict[str, str]
    target_ms: float | None = None  # p99 at the largest level
    growth_target: float | None = None  # p99 largest level / smallest level


KINDS: Final = (
    Kind(
        "aggregate",
        "aggregate",
        {**THIRTY_DAYS, "metrics": "pageviews,visitors,visits,bounce_rate,visit_duration"},
        20,
        1.5,
    ),
    Kind("timeseries 30d", "timeseries", {**THIRTY_DAYS, "interval": "day"}, 20, 1.5),
    Kind("breakdown path", "breakdown", {**THIRTY_DAYS, "property": "path", "limit": "10"}, 20, 1.5),
    Kind("breakdown source", "breakdown", {**THIRTY_DAYS, "property": "source", "limit": "10"}, 20, 1.5),
    Kind("breakdown country", "breakdown", {**THIRTY_DAYS, "property": "country", "limit": "10"}, 20, 1.5),
    Kind(
        "timeseries 12mo Kolkata",
        "timeseries",
        {"period": "12mo", "date": ANCHOR, "timezone": "Asia/Kolkata", "interval": "month"},
        50,
    ),
    Kind(
        "breakdown path, country==DE",
        "breakdown",
        {**THIRTY_DAYS, "property": "path", "filters": "country==DE", "limit": "10"},
        300,
    ),
    Kind("realtime", "realtime", {}),
)


@dataclass
class Sample:
    latencies: list[float]  # seconds, measured requests only
    timeouts: int  # 503 answers among them (the service's deadline)
    warmup: int
    elapsed_s: float


@dataclass
class Level:
    events: int
    load_rows_per_s: float
    inserted: int
    visits_generated: int
    samples: dict[tuple[str, str], Sample] = field(default_factory=dict)  # (kind, group)
    tables: str = ""
    visits_check: str = ""
    keeper: str = ""
    live: str = ""
    answers: str = ""
    explained: list[str] = field(default_factory=list)
    machine: str = ""


def request_path(kind: Kind, site: str) -> str:
    return f"/api/v2/stats/{kind.endpoint}?" + urlencode({"site_id": site, **kind.params}, safe=",/")


async def live_tail(database_url: str, level_events: int, seed: int) -> tuple[int, datetime]:
    """Merge the last LIVE_MINUTES of wall-clock traffic at the level's average rate (no event in the future)."""
    now = datetime.now(UTC)
    count = max(1, round(level_events / (DAYS * 1440) * LIVE_MINUTES))
    stream = VisitStream(seed, count, days=LIVE_MINUTES / 1440, end=now)
    limit = epoch_microseconds(now)
    events = [event for event in stream.events(count) if event.ts_us <= limit]
    connection = await asyncpg.connect(database_url)
    try:
        await prepare(connection)
        for event in events:
            event.accepted_ms = now_ms()
        inserted = await merge(connection, events)
    finally:
        await connection.close()
    return inserted, now


async def sites_by_views(database_url: str) -> list[str]:
    """VACUUM ANALYZE (what autovacuum does to a loaded table in time: without it no page of the fresh report cells
    is all-visible, and no index-only scan reads them), then the sites with page views, the most first (ties by
    name)."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("VACUUM ANALYZE")
        rows = await connection.fetch("SELECT site_id FROM site_totals WHERE views > 0 ORDER BY views DESC, site_id")
    finally:
        await connection.close()
    return [row["site_id"] for row in rows]


async def probe(port: int, paths: Iterator[str], limit: int, budget_s: float) -> Sample:
    """Sequential requests on one keep-alive connection: warm-up, then up to `limit` measured within `budget_s`."""
    connection = await connect("127.0.0.1", port)
    latencies: list[float] = []
    timeouts = warmup = 0

    async def one(path: str) -> tuple[float, bool]:
        raw = build_request("GET", path)
        started = time.perf_counter()
        status, body = await connection.request(raw)
        elapsed = time.perf_counter() - started
        if status not in (200, 503):
            raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
        return elapsed, status == 503

    try:
        started = time.monotonic()
        while warmup < WARMUP_REQUESTS and time.monotonic() - started < WARMUP_S:
            await one(next(paths))
            warmup += 1
        started = time.monotonic()
        while len(latencies) < limit and (len(latencies) < MIN_MEASURED or time.monotonic() - started < budget_s):
            elapsed, timed_out = await one(next(paths))
            latencies.append(elapsed)
            timeouts += timed_out
    finally:
        connection.close()
    return Sample(latencies, timeouts, warmup, time.monotonic() - started)


def drawn(kind: Kind, sites: Sequence[str], seed: int) -> Iterator[str]:
    draw = random.Random(seed)
    while True:
        yield request_path(kind, draw.choice(sites))


async def fetch_json(port: int, path: str) -> Any:
    connection = await connect("127.0.0.1", port)
    try:
        status, body = await connection.request(build_request("GET", path))
    finally:
        connection.close()
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
    return json.loads(body)["data"]


async def busiest_answers(port: int, site: str) -> str:
    """What the busiest site's reports say: the numbers must look like real traffic for the timings to mean much."""
    by_name = {kind.name: kind for kind in KINDS}
    aggregate = (await fetch_json(port, request_path(by_name["aggregate"], site)))["results"]
    parts = [", ".join(f"{name} {value['value']:,}" for name, value in aggregate.items())]
    for name, dimension in (("breakdown source", "sources"), ("breakdown country", "countries")):
        rows = (await fetch_json(port, request_path(by_name[name], site)))["results"][:4]
        value = name.split()[-1]
        top = ", ".join(f"{row[value] or '(none)'} {row['visitors']:,} visitors" for row in rows)
        parts.append(f"top {dimension} {top}")
    rows = (await fetch_json(port, request_path(by_name["breakdown path, country==DE"], site)))["results"][:3]
    parts.append("DE's top pages " + ", ".join(f"{row['path']} {row['pageviews']:,} views" for row in rows))
    return f"{site}, 30 days to {ANCHOR}: " + "; ".join(parts)


async def keep_days(database_url: str) -> str:
    """The distinct keeper's pass over the loaded days, which the writer role's keeper makes as each day ends: the
    service's own code (analytics/stats/keeper.py); then VACUUM ANALYZE of what it kept, as autovacuum does in time
    (without statistics, the planner took the kept values for one row and sorted them from the wrong index)."""
    pool = await create_pool(database_url, 1)
    try:
        started = time.monotonic()
        kept = await keep_past_days(pool, END.date(), DAYS + 1)
        elapsed = time.monotonic() - started
        await pool.execute(
            "VACUUM ANALYZE report_values, report_value_days, report_value_weeks, report_value_weeks_kept, "
            "report_distincts"
        )
    finally:
        await pool.close()
    return (
        f"distinct keeper over the {DAYS + 1} days before {END:%Y-%m-%d}: distinct sets of {kept.distincts:,} "
        f"site-days, values of {kept.values:,} and week sums of {kept.weeks:,} site-weeks kept in {elapsed:.1f} s"
    )


async def describe_tables(database_url: str, visits_generated: int) -> tuple[str, str]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            """
            SELECT t.name AS relname, sum(s.n_live_tup)::bigint AS n_live_tup, sum(s.n_dead_tup)::bigint AS n_dead_tup,
                   sum(pg_table_size(s.relid))::bigint AS heap, sum(pg_indexes_size(s.relid))::bigint AS indexes
            FROM (VALUES ('events'), ('visits')) AS t(name)
            CROSS JOIN LATERAL pg_partition_tree(t.name::regclass) AS p
            JOIN pg_stat_user_tables s ON s.relid = p.relid
            WHERE p.isleaf
            GROUP BY t.name ORDER BY t.name
            """
        )
        visits = await connection.fetchrow(
            """
            SELECT count(*) AS visits, count(*) FILTER (WHERE pageviews = 1 AND events = 1) AS bounces,
                   avg(events) AS events_per_visit, count(DISTINCT visitor) AS visitors
            FROM visits WHERE started_at < $1
            """,
            END,
        )
    finally:
        await connection.close()
    tables = ", ".join(
        f"{row['relname']} {row['n_live_tup']:,} rows ({row['n_dead_tup']:,} dead) / heap "
        f"{row['heap'] / 2**20:,.0f} MB + indexes {row['indexes'] / 2**20:,.0f} MB"
        for row in rows
    )
    assert visits is not None
    check = (
        f"visits stored (before {END:%Y-%m-%d}) {visits['visits']:,} for {visits_generated:,} generated "
        f"({visits['visits'] / max(1, visits_generated):.4f}: a visitor's two visits within 30 minutes join), "
        f"{100 * visits['bounces'] / max(1, visits['visits']):.1f} % bounces, "
        f"{float(visits['events_per_visit'] or 0):.2f} events a visit, {visits['visitors']:,} distinct visitor ids"
    )
    return tables, check


# --- EXPLAIN -------------------------------------------------------------------------------------------------------


async def statements(
    connection: asyncpg.Connection, kind: Kind, site: str, now: datetime
) -> list[tuple[str, str, list[object]]]:
    """(name, SQL, arguments) of every statement the service runs for this kind and site, built by its own code."""
    if kind.endpoint == "realtime":
        args: list[object] = [site, now - reports.LIVE_WINDOW, now + reports.LIVE_AHEAD]
        return [("live_visitors", REPORTS["live_visitors"], args)]
    query = parse_report_query(kind.endpoint, {"site_id": site, **kind.params})
    span = await reports.report_span(connection, query)
    starts = [bucket.start for bucket in buckets(span, query.interval)] if query.interval else [span.start]
    cell_served = kind.endpoint in ("aggregate", "timeseries") and not query.filters
    if cell_served and on_cell_grid([span.start, span.end, *starts]):
        days = [bucket.start for bucket in buckets(span, "day")]
        ends = [*starts[1:], span.end]
        return [
            ("cell_sums", REPORTS["cell_sums"], [site, span.start, span.end, days]),
            ("kept_distincts", REPORTS["kept_distincts"], [site, starts, ends]),
        ]
    found: list[tuple[str, str, list[object]]] = []
    if set(query.metrics) & reports.EVENT_METRICS:
        statement = reports.Statement(site, span, starts)
        found.append(("event_metrics", reports.event_metrics_sql(query, statement), statement.args))
    if set(query.metrics) & reports.VISIT_METRICS:
        statement = reports.Statement(site, span, starts)
        found.append(("visit_metrics", reports.visit_metrics_sql(query, statement), statement.args))
    return found


@dataclass
class Explained:
    kind: str
    name: str
    plan: dict[str, Any]

    @property
    def execution_ms(self) -> float:
        return float(self.plan["Execution Time"])

    @property
    def jit_ms(self) -> float:
        return float(self.plan.get("JIT", {}).get("Timing", {}).get("Total", 0.0))


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _node_ms(node: dict[str, Any]) -> float:
    return float(node.get("Actual Total Time", 0.0)) * max(1, int(node.get("Actual Loops", 1)))


def _exclusive_ms(node: dict[str, Any]) -> float:
    return _node_ms(node) - sum(_node_ms(child) for child in node.get("Plans", []))


def _label(node: dict[str, Any]) -> str:
    label = str(node["Node Type"])
    if "Relation Name" in node:
        label += f" on {node['Relation Name']}"
    if "Index Name" in node:
        label += f" using {node['Index Name']}"
    return label


def rows_read(plan: dict[str, Any]) -> dict[str, int]:
    """Rows each table's scans produced or discarded (filter, recheck), summed over loops, by relation."""
    read: dict[str, int] = {}
    for node in _nodes(plan):
        if "Relation Name" not in node:
            continue
        loops = max(1, int(node.get("Actual Loops", 1)))
        rows = int(node.get("Actual Rows", 0)) + int(node.get("Rows Removed by Filter", 0))
        rows += int(node.get("Rows Removed by Index Recheck", 0))
        read[node["Relation Name"]] = read.get(node["Relation Name"], 0) + rows * loops
    return read


def plan_shape(plan: dict[str, Any]) -> str:
    """The plan's scans and joins, to tell whether two plans differ."""
    return " > ".join(
        _label(node)
        for node in _nodes(plan)
        if "Scan" in node["Node Type"] or "Join" in node["Node Type"] or node["Node Type"] == "Nested Loop"
    )


def summary(explained: Explained) -> str:
    plan = explained.plan["Plan"]
    read = ", ".join(f"{table} {rows:,} rows" for table, rows in rows_read(plan).items())
    scans = sorted({_label(node) for node in _nodes(plan) if "Relation Name" in node})
    spill = sum(int(node.get("Temp Written Blocks", 0)) for node in _nodes(plan))
    text = (
        f"{explained.name} {explained.execution_ms:,.1f} ms: read {read or 'nothing'} ({'; '.join(scans)}); "
        f"buffers hit {plan.get('Shared Hit Blocks', 0):,} / read {plan.get('Shared Read Blocks', 0):,}"
    )
    if spill:
        text += f"; temp written {spill * 8 / 1024:,.1f} MB"
    if explained.jit_ms:
        text += f"; JIT {explained.jit_ms:,.1f} ms"
    return text


def costliest_nodes(explained: Explained, count: int = 5) -> str:
    nodes = sorted(_nodes(explained.plan["Plan"]), key=_exclusive_ms, reverse=True)[:count]
    return ", ".join(f"{_label(node)} {_exclusive_ms(node):,.0f} ms ({_rows_out(node):,} rows)" for node in nodes)


def _rows_out(node: dict[str, Any]) -> int:
    return int(node.get("Actual Rows", 0)) * max(1, int(node.get("Actual Loops", 1)))


def literal(value: object) -> str:
    """A statement argument as SQL text, for EXECUTE of a PREPAREd statement (its own casts type the arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(literal(item) for item in value) + "]"
    raise TypeError(f"no literal for {value!r}")


async def explain(connection: asyncpg.Connection, kind: Kind, site: str, now: datetime) -> list[Explained]:
    found = []
    for name, sql, args in await statements(connection, kind, site, now):
        raw = await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
        found.append(Explained(kind.name, name, (json.loads(raw) if isinstance(raw, str) else raw)[0]))
    return found


async def prepared_plan(
    connection: asyncpg.Connection, kind: Kind, busiest: str, others: Sequence[str], now: datetime
) -> list[str]:
    """What a prepared statement does, as the service's asyncpg prepares each one once per connection: run for
    `others` (sites drawn uniformly) first, then EXPLAIN ANALYZE EXECUTE for `busiest` under the server's
    plan_cache_mode, with the plan cache's generic/custom counts; and the forced generic plan's cost."""
    lines = []
    for index, (name, sql, args) in enumerate(await statements(connection, kind, busiest, now)):
        statement = f"bench_prepared_{index}"
        await connection.execute(f"PREPARE {statement} AS {sql}")
        try:
            for site in others:
                site_args = [site, *args[1:]]
                await connection.execute(f"EXECUTE {statement}({', '.join(literal(arg) for arg in site_args)})")
            execute = f"EXECUTE {statement}({', '.join(literal(arg) for arg in args)})"
            raw = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {execute}")
            used = (json.loads(raw) if isinstance(raw, str) else raw)[0]
            counts = await connection.fetchrow(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = $1", statement
            )
            assert counts is not None
            async with connection.transaction():
                await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                raw = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {execute}")
                generic = (json.loads(raw) if isinstance(raw, str) else raw)[0]
                await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                raw = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {execute}")
                custom = (json.loads(raw) if isinstance(raw, str) else raw)[0]
        finally:
            await connection.execute(f"DEALLOCATE {statement}")
        kind_of_plan = "a generic" if counts["generic_plans"] else "a custom"
        lines.append(
            f"{kind.name} {name} as a prepared statement (the service's asyncpg prepares each statement once per "
            f"connection) after {len(others)} runs for sites drawn uniformly: {counts['custom_plans']} custom and "
            f"{counts['generic_plans']} generic plans so far, {busiest} got {kind_of_plan} plan, "
            f"{used['Execution Time']:,.1f} ms ({plan_shape(used['Plan'])}); forced generic "
            f"{generic['Execution Time']:,.1f} ms (estimated cost {generic['Plan']['Total Cost']:,.0f}: "
            f"{plan_shape(generic['Plan'])}); forced custom {custom['Execution Time']:,.1f} ms (estimated cost "
            f"{custom['Plan']['Total Cost']:,.0f}: {plan_shape(custom['Plan'])})"
        )
    return lines


async def heap_pages(connection: asyncpg.Connection, site: str, kind: Kind) -> str:
    """How many heap pages of the events partitions hold the site's rows of the period: what any scan of them must
    visit, against the pages of the partitions they are in."""
    query = parse_report_query(kind.endpoint, {"site_id": site, **kind.params})
    span = await reports.report_span(connection, query)
    row = await connection.fetchrow(
        """
        WITH hit AS (
            SELECT tableoid, (ctid::text::point)[0] AS page
            FROM events WHERE site_id = $1 AND "timestamp" >= $2 AND "timestamp" < $3
        )
        SELECT count(*) AS rows, count(DISTINCT (tableoid, page)) AS pages,
               (SELECT coalesce(sum(pg_relation_size(p.tableoid::regclass)), 0)::bigint
                FROM (SELECT DISTINCT tableoid FROM hit) p) / current_setting('block_size')::int AS heap
        FROM hit
        """,
        site,
        span.start,
        span.end,
    )
    assert row is not None
    return (
        f"{site}'s events of {span.first} to {span.last}: {row['rows']:,} rows on {row['pages']:,} of the "
        f"{row['heap']:,} heap pages of the events partitions holding them "
        f"({100 * row['pages'] / max(1, row['heap']):.0f} %)"
    )


async def explain_all(
    database_url: str, busiest: str, median: str, others: Sequence[str], now: datetime, slowest: str
) -> list[str]:
    """EXPLAIN ANALYZE of each kind's statements for the busiest site, of the aggregate for the median site; for
    the `slowest` kind, its costliest nodes, its time without JIT, and its plan as a prepared statement."""
    by_name = {kind.name: kind for kind in KINDS}
    connection = await asyncpg.connect(database_url)
    lines: list[str] = []
    try:
        for site in (busiest, median):
            lines.append(await heap_pages(connection, site, by_name["aggregate"]))
        for kind, site in [(kind, busiest) for kind in KINDS] + [(by_name["aggregate"], median)]:
            explained = await explain(connection, kind, site, now)
            total = sum(item.execution_ms for item in explained)
            lines.append(f"{kind.name} on {site}: {total:,.1f} ms = " + "; ".join(summary(item) for item in explained))
            if kind.name != slowest or site != busiest:
                continue
            for item in explained:
                lines.append(f"{kind.name} {item.name}, costliest nodes (exclusive time): {costliest_nodes(item)}")
            async with connection.transaction():
                await connection.execute("SET LOCAL jit = off")
                without = await explain(connection, kind, site, now)
            lines.append(
                f"{kind.name} on {site} with jit off: {sum(item.execution_ms for item in without):,.1f} ms ("
                + "; ".join(f"{item.name} {item.execution_ms:,.1f} ms" for item in without)
                + ")"
            )
            lines += await prepared_plan(connection, kind, site, others, now)
    finally:
        await connection.close()
    return lines


# --- the run -------------------------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace) -> tuple[list[Level], list[str]]:
    context = [await server_versions(args.database_url, args.redis_url)]
    connection = await asyncpg.connect(args.database_url)
    settings = [f"{name} {await connection.fetchval(f'SHOW {name}')}" for name in ("shared_buffers", "work_mem", "jit")]
    await connection.close()
    context.append("PostgreSQL settings as installed: " + ", ".join(settings))
    levels: list[Level] = []
    async with (
        bench_redis(args.redis_url, PREFIX),
        bench_database(args.database_url, DATABASE, keep=args.keep) as url,
    ):
        api = analytics_service("api", database_url=url, redis_url=args.redis_url, prefix=PREFIX)
        with api:
            loaded = generated = 0
            for index, count in enumerate(args.levels):
                stream = VisitStream(args.seed + index, count - loaded, DAYS)
                rate, inserted = await load(url, stream, count - loaded, args.batch_size)
                loaded, generated = count, generated + stream.visits_started
                level = Level(count, rate, inserted, generated)
                print(f"{count:,} events loaded through the writer's merge at {rate:,.0f} rows/s", flush=True)
                by_views = await sites_by_views(url)
                level.keeper = await keep_days(url)
                print(level.keeper, flush=True)
                sites, busiest = sorted(by_views), by_views[:BUSIEST]
                level.tables, level.visits_check = await describe_tables(url, generated)
                busy_before, started = machine_busy(), time.monotonic()
                for number, kind in enumerate(KINDS):
                    if kind.endpoint == "realtime":
                        live, now = await live_tail(url, count, args.seed + 1000 + index)
                        visitors = (await fetch_json(api.port, request_path(kind, busiest[0])))["results"]["visitors"]
                        level.live = (
                            f"live tail for realtime: {live:,} events over the {LIVE_MINUTES} minutes before "
                            f"{now:%H:%M:%S} UTC (the level's average rate); {busiest[0]} had {visitors} live visitors"
                        )
                    for group, group_sites in (("uniform", sites), ("busiest", busiest)):
                        seed = args.seed + 7919 * index + 31 * number + (group == "busiest")
                        sample = await probe(api.port, drawn(kind, group_sites, seed), args.requests, args.budget)
                        level.samples[kind.name, group] = sample
                        print(f"  {kind.name}, {group}: {sample_text(sample)}", flush=True)
                level.machine = (
                    f"machine busy {(machine_busy() - busy_before) / (time.monotonic() - started):.2f} cores during "
                    f"the requests (client, api and PostgreSQL take turns: under 1 core when alone); other processes: "
                    f"{foreign_activity()}"
                )
                level.answers = await busiest_answers(api.port, busiest[0])
                slowest = max(KINDS, key=lambda kind: summary_ms(level.samples[kind.name, "busiest"].latencies)["p99"])
                median = by_views[len(by_views) // 2]
                others = random.Random(args.seed + index).choices(sites, k=PREPARED_RUNS)
                level.explained = await explain_all(url, busiest[0], median, others, datetime.now(UTC), slowest.name)
                levels.append(level)
                for line in level_lines(level):
                    print(line, flush=True)
    return levels, context


def sample_text(sample: Sample) -> str:
    summary = summary_ms(sample.latencies)
    text = (
        f"p50 {fmt_ms(summary['p50'])}, p99 {fmt_ms(summary['p99'])}, max {fmt_ms(summary['max'])} "
        f"({len(sample.latencies)} requests in {sample.elapsed_s:.0f} s"
    )
    if sample.timeouts:
        text += f", {sample.timeouts} answered 503 at the 10 s deadline"
    return text + ")"


def p99(level: Level, kind: Kind, group: str) -> float:
    return summary_ms(level.samples[kind.name, group].latencies)["p99"]


def level_lines(level: Level) -> list[str]:
    rate = f"{level.load_rows_per_s:,.0f} rows/s"
    lines = [f"{level.events:,} events (loaded through the writer's merge, visits included, at {rate}):"]
    for kind in KINDS:
        parts = [f"{group} {sample_text(level.samples[kind.name, group])}" for group in GROUPS]
        lines.append(f"{level.events:,} {kind.name}: " + "; ".join(parts))
    return lines


def verdicts(levels: Sequence[Level]) -> list[str]:
    """Each kind's targets against the largest level, and its p99 growth from the smallest to the largest."""
    first, last = levels[0], levels[-1]
    lines = []
    for kind in KINDS:
        for group in GROUPS:
            small, large = (
                summary_ms(first.samples[kind.name, group].latencies),
                summary_ms(last.samples[kind.name, group].latencies),
            )
            growth = large["p99"] / small["p99"]
            steps = ", ".join(
                f"{after.events:,}/{before.events:,} {p99(after, kind, group) / p99(before, kind, group):.2f}x"
                for before, after in itertools.pairwise(levels)
            )
            text = f"{kind.name}, {group} sites: p99 at {last.events:,} {fmt_ms(large['p99'])}"
            if kind.target_ms is not None:
                text += f" (target <= {kind.target_ms:g} ms at 10M: {met(large['p99'] <= kind.target_ms)})"
            if len(levels) > 1:
                text += f"; p99 growth {last.events:,}/{first.events:,} {growth:.2f}x"
                text += f" (p50 {large['p50'] / small['p50']:.2f}x"
                text += f"; level to level {steps})" if len(levels) > 2 else ")"
                if kind.growth_target is not None:
                    text += f" (target <= {kind.growth_target:g}x: {met(growth <= kind.growth_target)})"
            lines.append(text)
    return lines


def plot_growth(levels: list[Level]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    growth = plot_path("reports-latency-vs-events")
    figure, axes = plt.subplots(1, len(GROUPS), figsize=(14, 6), squeeze=False)
    counts = [level.events for level in levels]
    colours = plt.get_cmap("tab10")
    titles = {"uniform": "sites drawn uniformly", "busiest": f"the {BUSIEST} busiest sites"}
    for axis, group in zip(axes[0], GROUPS, strict=True):
        for number, kind in enumerate(KINDS):
            for key, style in (("p50", "--"), ("p99", "-")):
                values = [summary_ms(level.samples[kind.name, group].latencies)[key] for level in levels]
                label = f"{kind.name} {key}" if key == "p99" else None
                axis.plot(counts, values, style, marker="o", color=colours(number), label=label)
        for target in sorted({kind.target_ms for kind in KINDS if kind.target_ms is not None}):
            axis.axhline(target, color="grey", linewidth=0.8, linestyle=":")
            axis.annotate(f"target {target:g} ms", (counts[0], target), fontsize=7, color="grey", va="bottom")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("events stored")
        axis.set_ylabel("latency over HTTP (ms); p99 solid, p50 dashed")
        axis.grid(True, which="both", alpha=0.3)
        axis.set_title(f"GET /api/v2/stats/*: {titles[group]}")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(growth, dpi=110)
    plt.close(figure)

    plots = [growth]
    half = (len(KINDS) + 1) // 2
    for part, kinds in enumerate((KINDS[:half], KINDS[half:]), start=1):
        panels = [
            (
                kind.name,
                {
                    f"{level.events:,}, {group}": curve_from_samples(level.samples[kind.name, group].latencies)
                    for level in levels
                    for group in GROUPS
                },
            )
            for kind in kinds
        ]
        plots.append(
            plot_percentile_curves(
                plot_path(f"reports-latency-{part}"), "GET /api/v2/stats/* latency distribution per level", panels
            )
        )
    return plots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help=f"server to create {DATABASE} on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--levels",
        type=lambda text: sorted(int(part) for part in text.split(",")),
        default=[1_000_000, 10_000_000],
        help="cumulative event counts (default: 1000000,10000000)",
    )
    parser.add_argument("--requests", type=int, default=500, help="most measured requests per kind, group and level")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds of measured requests per kind and group")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="events per merge")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help=f"keep the {DATABASE} database afterwards")
    args = parser.parse_args()
    with Interference() as interference:
        levels, context = uvloop.run(measure(args))
    lines = [line for level in levels for line in level_lines(level)]
    lines += verdicts(levels)
    for level in levels:
        lines += [
            f"at {level.events:,}: tables {level.tables}",
            f"at {level.events:,}: {level.visits_check}",
            f"at {level.events:,}: {level.keeper}",
            f"at {level.events:,}: busiest site's answers: {level.answers}",
            f"at {level.events:,}: {level.live}",
            f"at {level.events:,}: {level.machine}",
            *[f"at {level.events:,}: EXPLAIN ANALYZE {line}" for line in level.explained],
        ]
    context += [
        f"per kind, group and level: up to {WARMUP_REQUESTS} warm-up requests ({WARMUP_S:g} s at most), then up to "
        f"{args.requests:,} measured requests or {args.budget:g} s; groups: sites drawn uniformly from those with page "
        f"views, and drawn from the {BUSIEST} with the most; date={ANCHOR}; VACUUM ANALYZE after each load; the api "
        "process ran throughout (warm pool)",
        *interference.lines(),
    ]
    record_result("v2 reports latency against event count", lines, context=context, plots=plot_growth(levels))


if __name__ == "__main__":
    main()
