"""Writer throughput: drain a 1,000,000-event backlog with the real writer role, against a plain COPY of the same rows.

    python -m bench.writer [--events 1000000] [--writers 1] [--lanes 2] [--batch-size 5000] [--profile-events 300000]

1. Fills the bench queue with --events records (analytics' own record encoding, RPUSH of 1,000 per call, pipelined)
   from bench/data.py's event stream, then starts --writers processes of `analytics serve --role writer
   --no-migrate` on a fresh migrated database and measures rows/s until the queue and every processing list are
   empty; the writers' peak RSS (VmHWM), and the CPU their processes, their PostgreSQL backends and PostgreSQL's WAL
   writer/checkpointer used.
2. Profiles a second drain (--profile-events more records; the first writer process) with py-spy, if installed
   (`pip install py-spy`).
3. Times each statement of the writer's merge for a few batches at the size reached, plus EXPLAIN ANALYZE of one.
4. Plain COPY (asyncpg copy_records_to_table, --batch-size rows per COPY, --lanes connections in parallel, then one)
   of the same rows into the events table of another fresh migrated database (rollup tables dropped), rows prepared
   before the clock starts: the ceiling the writer is compared with.
5. The floor (not with --onto), in three cumulative steps: the same plain COPY plus, in each batch's transaction,
   the rows that any writer keeping the contract's exact numbers must add besides the events, written once each and
   with no conflict to resolve (idempotency keys; first user-days and site users; visits), each step into a fresh
   database: how close to plain COPY an exact writer could come at best, and what each exact number costs at least.

With --onto NAME the writer drains into that existing database instead (e.g. the 10,000,000 events, visits and
rollups `bench.reports --keep` leaves in bench_reports), and the plain COPY goes into its events table too, each
connection's COPYs in one transaction that is rolled back once timed: both at the rows already stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aioredis
from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

from analytics.config import DEFAULTS
from analytics.events.contract import EPOCH
from analytics.events.record import Event, encode_event, event_key, now_ms
from analytics.queue.client import snapshot
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import PUSH_CHUNK
from analytics.store.events import MERGE, STAGING_COLUMNS, STAGING_TABLE, prepare, staging_rows
from analytics.store.partitions import Partitions
from analytics.store.queries import WRITER
from bench import profiling
from bench.data import EventStream
from bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Interference,
    RssSampler,
    Service,
    analytics_service,
    bench_database,
    bench_redis,
    cpu_seconds,
    database_url_for,
    met,
    redis_pid,
    server_versions,
)
from bench.results import record_result

PREFIX: Final = "bench-writer"
DATABASE: Final = "bench_writer"
COPY_DATABASE: Final = "bench_writer_copy"
FLOOR_DATABASE: Final = "bench_writer_floor"
PIPELINE_CHUNKS: Final = 20
POLL_S: Final = 0.05
DRAIN_TIMEOUT_S: Final = 1800
STATEMENT_BATCHES: Final = 6
EVENT_KEY_ONLY_SQL: Final = "SELECT count(event_key(site_id, event_type, user_id, path, ts_us)) FROM staging_events"
SCAN_ONLY_SQL: Final = "SELECT count(site_id || event_type || path || user_id || ts_us) FROM staging_events"
ROLLUP_TABLES: Final = (
    "daily_totals",
    "daily_users",
    "daily_path_views",
    "site_totals",
    "site_users",
    "site_path_views",
)


@dataclass
class Drain:
    events: int
    seconds: float
    steady_rows_per_s: float
    stored: int
    rss_peak_mb: float
    hwm_mb: float
    cores: dict[str, float] = field(default_factory=dict)
    write_seconds: float = 0.0
    batches: int = 0

    @property
    def rows_per_s(self) -> float:
        return self.events / self.seconds


# --- filling the queue ---------------------------------------------------------------------------------------------


async def fill(
    client: aioredis.Redis,
    keys: QueueKeys,
    stream: EventStream,
    total: int,
    batch: int,
    encode: Callable[[Event], bytes] = encode_event,
) -> float:
    """Push `total` records as the api would (its encoding, or `encode`'s); returns records/s of the push itself."""
    accepted = now_ms()
    elapsed = 0.0
    with tqdm(total=total, desc="filling the queue", unit="ev", unit_scale=True, leave=False) as bar:
        for events in stream.batches(total, batch * 4):
            for event in events:
                event.accepted_ms = accepted
            records = [encode(event) for event in events]
            started = time.perf_counter()
            for group in range(0, len(records), PUSH_CHUNK * PIPELINE_CHUNKS):
                async with client.pipeline(transaction=False) as pipe:
                    for start in range(group, min(group + PUSH_CHUNK * PIPELINE_CHUNKS, len(records)), PUSH_CHUNK):
                        pipe.rpush(keys.queue, *records[start : start + PUSH_CHUNK])
                    await pipe.execute()
            elapsed += time.perf_counter() - started
            bar.update(len(records))
    return total / elapsed


# --- the writer ----------------------------------------------------------------------------------------------------


async def postgres_pids(database_url: str, database: str) -> dict[str, int]:
    """The writer's backends (by pid) and PostgreSQL's own WAL writer and checkpointer."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            """
            SELECT pid, backend_type, datname FROM pg_stat_activity
            WHERE (datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend')
               OR backend_type IN ('walwriter', 'checkpointer', 'background writer')
            """,
            database,
        )
    finally:
        await connection.close()
    pids: dict[str, int] = {}
    for row in rows:
        kind = "postgres backends (writer's)" if row["datname"] == database else f"postgres {row['backend_type']}"
        pids[f"{kind}#{row['pid']}"] = row["pid"]
    return pids


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def writer_metrics(port: int) -> dict[str, float]:
    """A few series from the writer's /metrics."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    wanted = (
        "analytics_writer_write_seconds_sum",
        "analytics_writer_write_seconds_count",
        "analytics_events_stored_total",
    )
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


@dataclass
class _Progress:
    started: float | None = None
    ended: float | None = None
    mark10: tuple[float, int] | None = None
    mark90: tuple[float, int] | None = None
    cores: dict[str, float] = field(default_factory=dict)
    profile: profiling.Profile | str | None = None


async def _watch(
    client: aioredis.Redis,
    keys: QueueKeys,
    total: int,
    writers: Sequence[Service],
    admin_url: str,
    profile_seconds: float,
) -> _Progress:
    """Poll the queue until it and every processing list are empty; CPU use is measured from 10 % to the end."""
    progress = _Progress()
    redis_server = await redis_pid(client)
    watched: dict[str, int] = {}
    before: dict[str, float] = {}
    profiler: asyncio.Task[profiling.Profile | str] | None = None
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    with tqdm(total=total, desc="writer draining", unit="ev", unit_scale=True, leave=False) as bar:
        while time.monotonic() < deadline:
            state = await snapshot(client, keys)
            remaining = state.queued + sum(state.processing.values())
            now = time.monotonic()
            done = total - remaining
            if progress.started is None and state.queued < total:
                progress.started = now
                if profile_seconds:
                    profiler = asyncio.create_task(asyncio.to_thread(profiling.record, writers[0].pid, profile_seconds))
            if progress.mark10 is None and done >= total * 0.1:
                progress.mark10 = (now, done)
                watched = {f"writer process(es)#{writer.pid}": writer.pid for writer in writers}
                watched["redis"] = redis_server
                watched |= await postgres_pids(admin_url, database_name(writers[0].env["DATABASE_URL"]))
                before = {name: cpu_seconds(pid) for name, pid in watched.items()}
            if progress.mark90 is None and done >= total * 0.9:
                progress.mark90 = (now, done)
            bar.n = done
            bar.refresh()
            if remaining == 0:
                progress.ended = now
                break
            await asyncio.sleep(POLL_S)
    if progress.mark10 is not None and progress.ended is not None:
        window = progress.ended - progress.mark10[0]
        for name, pid in watched.items():
            label = name.split("#", 1)[0]
            progress.cores[label] = progress.cores.get(label, 0.0) + (cpu_seconds(pid) - before[name]) / window
    if profiler is not None:
        progress.profile = await profiler
    return progress


async def drain(
    client: aioredis.Redis,
    keys: QueueKeys,
    total: int,
    database_url: str,
    admin_url: str,
    args: argparse.Namespace,
    *,
    profile_seconds: float = 0.0,
    tree: Path | None = None,
) -> tuple[Drain, profiling.Profile | str | None]:
    """Start the writer role (of another checkout, given `tree`) on a filled queue and watch it drain (the watch
    starts before the process does)."""
    env = {
        "ANALYTICS_WRITER_CONCURRENCY": str(args.lanes),
        "ANALYTICS_BATCH_SIZE": str(args.batch_size),
        "ANALYTICS_QUEUE_MAX_LENGTH": str(10 * total),
    }
    writers = [
        analytics_service(
            "writer", database_url=database_url, redis_url=args.redis_url, prefix=keys.prefix, extra_env=env, tree=tree
        )
        for _ in range(args.writers)
    ]
    watch = asyncio.create_task(_watch(client, keys, total, writers, admin_url, profile_seconds))
    try:
        with contextlib.ExitStack() as running:
            for writer in writers:
                await asyncio.to_thread(writer.start)
                running.callback(writer.__exit__)
            samplers = [running.enter_context(RssSampler(writer.pid, 0.05)) for writer in writers]
            progress = await watch
            metrics: dict[str, float] = {}
            for writer in writers:
                for name, value in (await writer_metrics(writer.port)).items():
                    metrics[name] = metrics.get(name, 0.0) + value
            hwm = max(sampler.hwm_mb for sampler in samplers)
            rss_peak = max(sampler.peak_mb for sampler in samplers)
            log = "\n".join(writer.log() for writer in writers)
    finally:
        watch.cancel()
    started, ended, mark10, mark90 = progress.started, progress.ended, progress.mark10, progress.mark90
    if started is None or ended is None or mark10 is None or mark90 is None:
        raise RuntimeError(f"the writer did not drain the queue in {DRAIN_TIMEOUT_S} s:\n{log}")
    steady = (mark90[1] - mark10[1]) / (mark90[0] - mark10[0]) if mark90[0] > mark10[0] else float("nan")
    result = Drain(
        events=total,
        seconds=ended - started,
        steady_rows_per_s=steady,
        stored=int(metrics.get("analytics_events_stored_total", 0)),
        rss_peak_mb=rss_peak,
        hwm_mb=hwm,
        cores=progress.cores,
        write_seconds=metrics.get("analytics_writer_write_seconds_sum", 0.0),
        batches=int(metrics.get("analytics_writer_write_seconds_count", 0)),
    )
    return result, progress.profile


# --- statement timings ---------------------------------------------------------------------------------------------


def merge_statements() -> list[tuple[str, str]]:
    """The writer's merge, split into its statements, each labelled by the tables it inserts into."""
    statements = [part.strip() for part in re.split(r";\s*\n", MERGE) if part.strip()]
    labelled = []
    for statement in statements:
        targets = re.findall(r"INSERT INTO (\w+)", statement)
        labelled.append((" + ".join(dict.fromkeys(targets)), statement))
    return labelled


def _exclusive_nodes(plan: dict[str, Any], found: list[tuple[float, str]]) -> None:
    loops = plan.get("Actual Loops", 1) or 1
    total = plan.get("Actual Total Time", 0.0) * loops
    children = plan.get("Plans", [])
    child_total = sum(child.get("Actual Total Time", 0.0) * (child.get("Actual Loops", 1) or 1) for child in children)
    if plan.get("Node Type") != "CTE Scan":
        label = plan["Node Type"]
        if "Relation Name" in plan:
            label += f" {plan['Relation Name']}"
        if "Index Name" in plan:
            label += f" ({plan['Index Name']})"
        found.append((max(0.0, total - child_total), label))
    for child in children:
        _exclusive_nodes(child, found)


async def statement_timings(database_url: str, stream: EventStream, batch_size: int) -> list[str]:
    """Per-statement wall time of the merge over a few batches committed for real; then one batch explained."""
    statements = merge_statements()
    connection = await asyncpg.connect(database_url)
    try:
        await prepare(connection)
        rows_before = await connection.fetchval("SELECT count(*) FROM events")
        steps: dict[str, float] = {}

        def add(step: str, seconds: float) -> None:
            steps[step] = steps.get(step, 0.0) + seconds

        # Alternate batches commit with synchronous_commit off (not waiting for the WAL flush): interleaved, so the
        # difference is what the fsync at commit costs rather than drift between two series.
        async_commit = 0.0
        for number, records in enumerate(stream.batches(2 * STATEMENT_BATCHES * batch_size, batch_size)):
            queued = records
            if number % 2:
                started = time.perf_counter()
                async with connection.transaction():
                    await connection.execute("SET LOCAL synchronous_commit = off")
                    await connection.copy_records_to_table(
                        STAGING_TABLE, records=staging_rows(queued), columns=STAGING_COLUMNS
                    )
                    for _, statement in statements:
                        await connection.execute(statement)
                    await connection.fetchval(WRITER["inserted_count"])
                async_commit += time.perf_counter() - started
                continue
            transaction = connection.transaction()
            started = time.perf_counter()
            await transaction.start()
            add("BEGIN", time.perf_counter() - started)
            clock = time.perf_counter()
            await connection.copy_records_to_table(STAGING_TABLE, records=staging_rows(queued), columns=STAGING_COLUMNS)
            add("COPY into staging", time.perf_counter() - clock)
            for label, statement in statements:
                clock = time.perf_counter()
                await connection.execute(statement)
                add(f"INSERT {label}", time.perf_counter() - clock)
            clock = time.perf_counter()
            await connection.fetchval(WRITER["inserted_count"])
            add("count inserted", time.perf_counter() - clock)
            clock = time.perf_counter()
            await transaction.commit()
            add("COMMIT", time.perf_counter() - clock)
            add("whole batch", time.perf_counter() - started)

        # The SQL key function alone (the writer computes keys in Python; the migration's backfill uses this): what
        # computing it in PostgreSQL would cost per batch.
        key_ms: float | None = None
        if await connection.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'event_key'"):
            records = stream.events(batch_size)
            async with connection.transaction():
                await connection.copy_records_to_table(
                    STAGING_TABLE,
                    records=staging_rows(records),
                    columns=STAGING_COLUMNS,
                )
                clock = time.perf_counter()
                await connection.fetchval(EVENT_KEY_ONLY_SQL)
                key_ms = (time.perf_counter() - clock) * 1000
                clock = time.perf_counter()
                await connection.fetchval(SCAN_ONLY_SQL)
                key_ms -= (time.perf_counter() - clock) * 1000

        explained: list[str] = []
        records = stream.events(batch_size)
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.copy_records_to_table(
                STAGING_TABLE,
                records=staging_rows(records),
                columns=STAGING_COLUMNS,
            )
            for label, statement in statements:
                raw = await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}")
                plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
                nodes: list[tuple[float, str]] = []
                _exclusive_nodes(plan["Plan"], nodes)
                nodes.sort(reverse=True)
                top = ", ".join(f"{name} {ms:.1f} ms" for ms, name in nodes[:3])
                explained.append(f"`{label}`: {plan['Execution Time']:.1f} ms; heaviest nodes: {top}")
        finally:
            await transaction.rollback()
    finally:
        await connection.close()

    per_batch = {step: seconds / STATEMENT_BATCHES * 1000 for step, seconds in steps.items()}
    whole = per_batch.pop("whole batch")
    table = ["| step | ms per batch | share |", "|---|---:|---:|"]
    table += [f"| {step} | {ms:.1f} | {ms / whole:.0%} |" for step, ms in per_batch.items()]
    table.append(f"| whole batch | {whole:.1f} | 100% |")
    key_line = (
        []
        if key_ms is None
        else [f"event_key() alone over one staged batch: {key_ms:.1f} ms ({key_ms * 1000 / batch_size:.1f} µs/row)"]
    )
    return [
        f"merge statements, {STATEMENT_BATCHES} batches of {batch_size:,} at {rows_before:,} stored rows, one "
        f"connection: {whole:.1f} ms per batch = {batch_size / whole * 1000:,.0f} rows/s on one lane; "
        f"interleaved batches with synchronous_commit off: {async_commit / STATEMENT_BATCHES * 1000:.1f} ms per batch",
        "\n".join(table),
        *key_line,
        *[f"EXPLAIN ANALYZE {line}" for line in explained],
    ]


# --- plain COPY ----------------------------------------------------------------------------------------------------


# Event fields stored as they are (ts_us becomes "timestamp"; accepted_ms and client_ts_us are not stored).
STORED_FIELDS: Final = tuple(
    field for field in Event.__struct_fields__ if field not in ("ts_us", "accepted_ms", "client_ts_us")
)


def event_rows(events: Sequence[Event], columns: Sequence[str]) -> list[tuple[Any, ...]]:
    rows = []
    for event in events:
        # The values the writer's merge stores: the record's own fields, the visitor defaulting to the user.
        values: dict[str, Any] = {field: getattr(event, field) for field in STORED_FIELDS}
        values["timestamp"] = EPOCH + timedelta(microseconds=event.ts_us)
        values["visitor"] = event.visitor or event.user_id
        if "event_key" in columns:
            values["event_key"] = event_key(event)
        rows.append(tuple(values[column] for column in columns))
    return rows


def prepared_batches(args: argparse.Namespace) -> list[list[Event]]:
    """The drained events again, in the writer's batches: what the COPY measurements store."""
    return list(
        tqdm(
            EventStream(args.seed, args.events, args.days).batches(args.events, args.batch_size),
            total=-(-args.events // args.batch_size),
            desc="preparing COPY rows",
            leave=False,
        )
    )


async def _make_partitions(database_url: str, events: Sequence[Sequence[Event]]) -> None:
    """The months' partitions, as the writer makes them before its first batch of a month: not COPY's work."""
    connection = await asyncpg.connect(database_url)
    try:
        everything = [event for records in events for event in records]
        earliest, latest = min(everything, key=lambda e: e.ts_us), max(everything, key=lambda e: e.ts_us)
        await Partitions().before_batch(connection, [earliest, latest])
    finally:
        await connection.close()


async def plain_copy(
    database_url: str, args: argparse.Namespace, events: Sequence[Sequence[Event]], *, rolled_back: bool = False
) -> tuple[float, float, list[str]]:
    """rows/s of plain COPY with --lanes connections, then with one; and the events table's indexes. Into an empty
    table without the rollups, or (`rolled_back`) into the table as it is, each connection's COPYs in a transaction
    rolled back once timed."""
    connection = await asyncpg.connect(database_url)
    try:
        for table in () if rolled_back else ROLLUP_TABLES:
            await connection.execute(f"DROP TABLE IF EXISTS {table}")
        columns: list[str] = [
            row["column_name"]
            for row in await connection.fetch(
                """
                SELECT column_name FROM information_schema.columns
                WHERE table_name = 'events' AND column_name NOT IN ('id', 'inserted_at')
                  AND table_schema = current_schema()
                ORDER BY ordinal_position
                """
            )
        ]
        unknown = set(columns) - {*STORED_FIELDS, "timestamp", "event_key"}
        if unknown:
            raise RuntimeError(f"events has columns this benchmark does not know how to fill: {sorted(unknown)}")
        indexes = [
            row["indexdef"]
            for row in await connection.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'events'")
        ]
    finally:
        await connection.close()

    batches = [event_rows(records, columns) for records in events]
    await _make_partitions(database_url, events)

    async def copy_all(lanes: int) -> float:
        connections = [await asyncpg.connect(database_url) for _ in range(lanes)]
        if not rolled_back:
            await connections[0].execute("TRUNCATE events")
        transactions = [connection.transaction() for connection in connections] if rolled_back else []
        pending: Iterator[list[tuple[Any, ...]]] = iter(batches)
        bar = tqdm(
            total=args.events, desc=f"plain COPY, {lanes} connection(s)", unit="row", unit_scale=True, leave=False
        )

        copied = 0

        async def lane(connection: asyncpg.Connection) -> None:
            nonlocal copied
            for rows in pending:
                status = await connection.copy_records_to_table("events", records=rows, columns=columns)
                copied += int(status.split()[-1])
                bar.update(len(rows))

        for transaction in transactions:
            await transaction.start()
        started = time.perf_counter()
        await asyncio.gather(*(lane(connection) for connection in connections))
        elapsed = time.perf_counter() - started
        bar.close()
        for transaction in transactions:
            await transaction.rollback()
        for connection in connections:
            await connection.close()
        assert copied == args.events, f"plain COPY stored {copied} rows"
        return int(args.events) / elapsed

    parallel = await copy_all(args.lanes)
    single = await copy_all(1) if args.lanes != 1 else parallel
    return parallel, single, indexes


# --- the floor: what an exact writer must index per event, as plain COPY -------------------------------------------

VISIT_COLUMNS: Final = (
    "site_id",
    "visitor",
    "started_at",
    "ended_at",
    "pageviews",
    "events",
    "entry_page",
    "exit_page",
)
VISIT_IDLE: Final = timedelta(minutes=30)


def floor_rows(events: Sequence[Sequence[Event]]) -> list[dict[str, list[Any]]]:
    """Per batch, the rows besides the events that any writer keeping the contract's exact numbers adds, each once
    and with no conflict to resolve: every event's idempotency key, the (site, day, user) and (site, user) seen
    first (exact day and all-time unique users), and the visits the batch starts (30 minutes idle, by event time;
    completed over the whole stream, so a visit is written once)."""
    seen_days: set[tuple[str, object, str]] = set()
    seen_users: set[tuple[str, str]] = set()
    open_visits: dict[tuple[str, str], list[Any]] = {}
    tables = []
    for records in events:
        rows: dict[str, list[Any]] = {"event_keys": [], "daily_users": [], "site_users": [], "visits": []}
        for event in records:
            at = EPOCH + timedelta(microseconds=event.ts_us)
            rows["event_keys"].append((event.site_id, event_key(event)))
            if event.event_type == "page_view" and event.user_id is not None:
                user = uuid.UUID(bytes=hashlib.md5(event.user_id.encode()).digest())
                if (event.site_id, at.date(), event.user_id) not in seen_days:
                    seen_days.add((event.site_id, at.date(), event.user_id))
                    rows["daily_users"].append((event.site_id, at.date(), user))
                if (event.site_id, event.user_id) not in seen_users:
                    seen_users.add((event.site_id, event.user_id))
                    rows["site_users"].append((event.site_id, user))
            visitor = event.visitor or event.user_id
            if visitor is None:
                continue
            page = event.path if event.event_type == "page_view" else None
            visit = open_visits.get((event.site_id, visitor))
            if visit is None or at - visit[3] > VISIT_IDLE:
                visit = [event.site_id, visitor, at, at, 0, 0, page, page]
                open_visits[(event.site_id, visitor)] = visit
                rows["visits"].append(visit)
            visit[3] = at
            visit[4] += page is not None
            visit[5] += 1
            visit[7] = page if page is not None else visit[7]
            visit[6] = visit[6] if visit[6] is not None else page
        tables.append(rows)
    return [{table: [tuple(row) for row in table_rows] for table, table_rows in rows.items()} for rows in tables]


# Each step adds its tables to the previous one's: what each exact number costs at least.
FLOOR_STEPS: Final[tuple[tuple[str, dict[str, Sequence[str]]], ...]] = (
    ("idempotency keys", {"event_keys": ("site_id", "event_key")}),
    (
        "first user-days and site users",
        {"daily_users": ("site_id", "day", "user_md5"), "site_users": ("site_id", "user_md5")},
    ),
    ("visits", {"visits": VISIT_COLUMNS}),
)


FLOOR_EVENT_COLUMNS: Final = ("event_key", *STORED_FIELDS, "timestamp")
# Per batch: its events' rows, and its rows of each floor table.
FloorWork = list[tuple[list[tuple[Any, ...]], dict[str, list[Any]]]]


async def floor_copy(
    database_url: str,
    args: argparse.Namespace,
    events: Sequence[Sequence[Event]],
    work: FloorWork,
    tables: dict[str, Sequence[str]],
) -> float:
    """rows/s (events) of a floor on --lanes connections: each batch's events and its rows of `tables` COPYed in one
    transaction, into a fresh database's tables with their indexes (no upserts, no rollups)."""
    await _make_partitions(database_url, events)
    connections = [await asyncpg.connect(database_url) for _ in range(args.lanes)]
    pending = iter(work)

    async def lane(connection: asyncpg.Connection) -> None:
        for rows, extra in pending:
            async with connection.transaction():
                await connection.copy_records_to_table("events", records=rows, columns=FLOOR_EVENT_COLUMNS)
                for table, table_columns in tables.items():
                    await connection.copy_records_to_table(table, records=extra[table], columns=table_columns)

    started = time.perf_counter()
    await asyncio.gather(*(lane(connection) for connection in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    return int(args.events) / elapsed


async def floors(args: argparse.Namespace, events: Sequence[Sequence[Event]], plain: float, writer: float) -> list[str]:
    """The floor step by step, each into a fresh database."""
    lines: list[str] = []
    tables: dict[str, Sequence[str]] = {}
    work = [
        (event_rows(records, FLOOR_EVENT_COLUMNS), extra)
        for records, extra in zip(events, floor_rows(events), strict=True)
    ]
    for step, (_, added) in enumerate(FLOOR_STEPS):
        tables |= added
        async with bench_database(args.database_url, FLOOR_DATABASE) as floor_url:
            floor = await floor_copy(floor_url, args, events, work, tables)
        lines.append(
            f"floor, the events plus {', '.join(name for name, _ in FLOOR_STEPS[: step + 1])} "
            f"({args.lanes} connections): {floor:,.0f} rows/s = {floor / plain:.2f}x plain COPY; "
            f"writer / this floor {writer / floor:.2f}x"
        )
    return lines


# --- the run -------------------------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace) -> tuple[list[str], list[str], list[str]]:
    keys = QueueKeys(PREFIX)
    context = [await server_versions(args.database_url, args.redis_url)]
    lines: list[str] = []
    tables: list[str] = []
    stream = EventStream(args.seed, args.events, args.days)
    target = (
        existing_database(args.database_url, args.onto) if args.onto else bench_database(args.database_url, DATABASE)
    )
    async with bench_redis(args.redis_url, PREFIX) as client, target as url:
        stored_before = await _stored_rows(url)
        push_rate = await fill(client, keys, stream, args.events, args.batch_size)
        result, _ = await drain(client, keys, args.events, url, args.database_url, args)
        stored_rows = await _stored_rows(url) - stored_before
        cores = ", ".join(f"{name} {value:.2f}" for name, value in result.cores.items())
        lanes_busy = result.write_seconds / (result.seconds * args.lanes * args.writers)
        per_batch_ms = result.write_seconds / max(result.batches, 1) * 1000
        lines += [
            f"queue filled at {push_rate:,.0f} records/s (RPUSH of {PUSH_CHUNK:,}, {PIPELINE_CHUNKS} per pipeline)",
            f"{args.writers} writer process(es) ({args.lanes} lanes each, batches of {args.batch_size:,}): "
            f"{args.events:,} events drained in "
            f"{result.seconds:.1f} s = {result.rows_per_s:,.0f} rows/s (10 %→90 % of the backlog: "
            f"{result.steady_rows_per_s:,.0f} rows/s); {stored_rows:,} rows stored onto {stored_before:,}, writer "
            f"counted {result.stored:,}",
            f"writer RSS (the largest process) with the {args.events:,} backlog: peak {result.hwm_mb:.0f} MB (VmHWM; "
            f"sampled VmRSS peak "
            f"{result.rss_peak_mb:.0f} MB) (target <= 250 MB: {met(result.hwm_mb <= 250)})",
            f"cores used while draining: {cores}",
            f"writer's own COPY+merge+commit timer: {result.batches:,} batches, {per_batch_ms:.0f} ms per batch, "
            f"lanes busy {lanes_busy:.0%} of the wall time",
        ]
        profile_summary: list[str] = []
        if args.profile_events and profiling.py_spy() is not None:
            await fill(client, keys, stream, args.profile_events, args.batch_size)
            seconds = max(3.0, 0.8 * args.profile_events / result.rows_per_s)
            second, profile = await drain(
                client, keys, args.profile_events, url, args.database_url, args, profile_seconds=seconds
            )
            profile_summary.append(
                f"profiled drain of {args.profile_events:,} more events (py-spy --nonblocking --idle, {seconds:.0f} s, "
                f"table at {args.events:,}+ rows): {second.rows_per_s:,.0f} rows/s"
            )
            profile_summary += (
                [
                    f"writer profile: {line}"
                    for line in profile.lines(
                        idle="in the event loop (waiting on PostgreSQL or Redis, or in C between callbacks)",
                        busy="in Python code",
                    )
                ]
                if isinstance(profile, profiling.Profile)
                else [f"writer profile: {profile}"]
            )
        elif args.profile_events:
            profile_summary.append("writer profile: skipped, py-spy is not installed (pip install py-spy)")
        timings = await statement_timings(url, stream, args.batch_size)
    lines += profile_summary
    lines.append(timings[0])
    tables.append(timings[1])
    lines += timings[2:]

    if args.onto:
        copy_target = existing_database(args.database_url, args.onto)
        where = f"the events of {args.onto} ({await _stored_rows(url):,} rows; rolled back)"
    else:
        copy_target = bench_database(args.database_url, COPY_DATABASE)
        where = "events of a fresh database (no rollups)"
    events = prepared_batches(args)
    async with copy_target as copy_url:
        parallel, single, indexes = await plain_copy(copy_url, args, events, rolled_back=bool(args.onto))
    ratio = result.rows_per_s / parallel
    lines += [
        f"plain COPY of the same {args.events:,} rows into {where} ({len(indexes)} indexes), batches of "
        f"{args.batch_size:,}: {parallel:,.0f} rows/s on {args.lanes} connections, {single:,.0f} rows/s on one",
        f"writer / plain COPY ({args.writers} writer(s) of {args.lanes} lanes; COPY on {args.lanes} connections): "
        f"{ratio:.2f}x (target >= 0.8x: {met(ratio >= 0.8)})",
        f"writer rows/s (target >= 50,000: {met(result.rows_per_s >= 50_000)})",
    ]
    if not args.onto:
        lines += await floors(args, events, parallel, result.rows_per_s)
    context.append("events indexes: " + "; ".join(f"`{index}`" for index in indexes))
    return lines, tables, context


@contextlib.asynccontextmanager
async def existing_database(base_url: str, name: str) -> AsyncIterator[str]:
    """A database left by another bench (bench_*), used as it is and kept."""
    assert name.startswith("bench_"), "bench databases are named bench_*"
    yield database_url_for(base_url, name)


async def _stored_rows(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        stored: int = await connection.fetchval("SELECT count(*) FROM events")
    finally:
        await connection.close()
    return stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="server to create bench_writer* on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--events", type=int, default=1_000_000, help="backlog size (default: %(default)s)")
    parser.add_argument("--onto", help="drain into this existing bench_* database (e.g. bench_reports) and keep it")
    parser.add_argument("--writers", type=int, default=1, help="writer processes (default: %(default)s)")
    parser.add_argument("--lanes", type=int, default=DEFAULTS.writer_concurrency, help="ANALYTICS_WRITER_CONCURRENCY")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="ANALYTICS_BATCH_SIZE")
    parser.add_argument("--profile-events", type=int, default=300_000, help="second, profiled drain (0: none)")
    parser.add_argument("--days", type=float, default=1, help="time span of the backlog (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with Interference() as interference:
        lines, tables, context = asyncio.run(measure(args))
    context += [
        f"events from bench/data.py: 300 sites, Zipf-like sites and paths, 15 % anonymous, 80 % page views, "
        f"in time order over {args.days:g} day(s) (a backlog of live traffic)",
        *interference.lines(),
    ]
    record_result("writer throughput", lines, context=context, tables=tables)


if __name__ == "__main__":
    main()
