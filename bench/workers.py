"""Ingest with several api processes on one machine: `serve --role api --workers N` for N = 1, 2, 4 under wrk.

    python -m bench.workers [--workers 1,2,4] [--rounds 2] [--duration 6] [--connections 64] [--batch 100]

One api per worker count (`analytics serve --role api --no-migrate` with ANALYTICS_WORKERS=N, a bench database and
Redis prefix, a queue cap of 10^9), all up for the whole run; wrk at --connections on POST /api/ingestion/event (one
event per request) and on POST /api/ingestion/events (--batch events per request), every event distinct
(bench/wrk/ingest.lua). Rounds interleave the targets, each run after a short warm-up; the median run of each is
reported. No writer runs: the queue is deleted after each run. CPU is read from /proc for every worker (and the
parent, which only supervises), Redis and wrk: the api's CPU per request is the sum over its processes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Interference,
    Service,
    analytics_service,
    bench_database,
    bench_redis,
    delete_prefix,
    fmt_ms,
    redis_pid,
    server_versions,
)
from bench.ingest import BATCH_PATH, PREFIX, QUEUE_CAP, SINGLE_PATH, WrkRun, queue_length, run_wrk, wrk_context
from bench.results import record_result

DATABASE: Final = "bench_workers"
WARMUP_S: Final = 2


def worker_pids(service: Service, count: int, timeout_s: float = 30) -> list[int]:
    """The processes that serve: the service itself with one worker, else its spawned children (not
    multiprocessing's resource tracker), once all of them run."""
    if count == 1:
        return [service.pid]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = [
            int(pid)
            for task in Path(f"/proc/{service.pid}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
        workers = [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        if len(workers) == count:
            return workers
        time.sleep(0.1)
    raise RuntimeError(f"{service.name}: {count} workers not seen within {timeout_s:g} s")


@dataclass
class Target:
    workers: int
    service: Service
    path: str
    batch: int
    pids: list[int]
    runs: list[WrkRun]

    @property
    def name(self) -> str:
        shape = "single event" if not self.batch else f"batch of {self.batch}"
        return f"{self.workers} worker{'s' if self.workers > 1 else ''}, {shape}"

    def median(self) -> WrkRun:
        ordered = sorted(self.runs, key=lambda run: run.requests_per_s)
        middle = ordered[(len(ordered) - 1) // 2]
        middle.all_rates = [run.requests_per_s for run in self.runs]
        return middle


def line(target: Target, run: WrkRun) -> str:
    api = sum(cores for label, cores in run.cores.items() if label.startswith(("worker", "parent")))
    workers = ", ".join(f"{cores:.2f}" for label, cores in run.cores.items() if label.startswith("worker"))
    others = ", ".join(
        f"{label} {cores:.2f}" for label, cores in run.cores.items() if not label.startswith(("worker", "parent"))
    )
    errors = ", ".join(f"{name} {count}" for name, count in run.errors.items() if count) or "none"
    rates = ", ".join(f"{rate:,.0f}" for rate in run.all_rates)
    return (
        f"{target.name}: {run.requests_per_s:,.0f} req/s (runs: {rates}), {run.events_per_s:,.0f} events/s; latency "
        f"p50 {fmt_ms(run.latency_ms(50))}, p99 {fmt_ms(run.latency_ms(99))}; api CPU "
        f"{api / run.requests_per_s * 1e6:.1f} µs/request over its processes; cores: api {api:.2f} (workers "
        f"{workers}; parent {run.cores.get('parent', 0.0):.2f}), {others}; errors: {errors}; Redis received "
        f"{run.queued or 0:,} events"
    )


async def measure(args: argparse.Namespace, counts: list[int]) -> tuple[list[tuple[Target, WrkRun]], list[str]]:
    context = [await server_versions(args.database_url, args.redis_url)]
    async with bench_redis(args.redis_url, PREFIX) as client, bench_database(args.database_url, DATABASE) as db_url:
        redis_server = await redis_pid(client)
        services = {
            count: analytics_service(
                "api",
                database_url=db_url,
                redis_url=args.redis_url,
                prefix=PREFIX,
                extra_env={"ANALYTICS_QUEUE_MAX_LENGTH": str(QUEUE_CAP), "ANALYTICS_WORKERS": str(count)},
            )
            for count in counts
        }
        try:
            for service in services.values():
                service.start()
            targets = []
            for count, service in services.items():
                pids = worker_pids(service, count)
                for path, batch in ((SINGLE_PATH, 0), (BATCH_PATH, args.batch)):
                    targets.append(Target(count, service, path, batch, pids, []))
            for round_number in range(1, args.rounds + 1):
                for target in targets:
                    port = target.service.port
                    run_wrk("warm-up", port, target.path, target.batch, args, WARMUP_S, {}, progress=False)
                    await delete_prefix(client, PREFIX)
                    watch = {f"worker {index}": pid for index, pid in enumerate(target.pids, 1)}
                    if target.workers > 1:
                        watch["parent"] = target.service.pid
                    watch["redis"] = redis_server
                    label = f"{target.name}, round {round_number}/{args.rounds}"
                    run = run_wrk(label, port, target.path, target.batch, args, args.duration, watch)
                    run.queued = await queue_length(client)
                    await delete_prefix(client, PREFIX)
                    target.runs.append(run)
        finally:
            for service in services.values():
                service.stop()
    return [(target, target.median()) for target in targets], context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="server to create bench_workers on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to compare (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=6, help="seconds per measured run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each target, interleaved (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=100, help="events per batch request (default: %(default)s)")
    args = parser.parse_args()
    counts = [int(count) for count in args.workers.split(",")]
    started = time.monotonic()
    with Interference() as interference:
        results, context = asyncio.run(measure(args, counts))
    lines = [line(target, run) for target, run in results]
    baseline = {target.batch: run for target, run in results if target.workers == counts[0]}
    lines += [
        f"{target.name} / {counts[0]} worker(s): {run.requests_per_s / baseline[target.batch].requests_per_s:.2f}x "
        f"req/s, p99 {fmt_ms(run.latency_ms(99))} against {fmt_ms(baseline[target.batch].latency_ms(99))}"
        for target, run in results
        if target.workers != counts[0]
    ]
    context += [
        *wrk_context(
            args,
            WARMUP_S,
            "wrk, the api processes (one api loaded at a time), Redis and PostgreSQL share the machine's cores",
            started,
        ),
        *interference.lines(),
    ]
    record_result("ingest with several api processes (--workers)", lines, context=context)


if __name__ == "__main__":
    main()
