"""Ingestion throughput and latency under wrk: the real api role against a raw ASGI no-op under the same uvicorn.

    python -m bench.ingest [--rounds 3] [--duration 10] [--connections 64] [--threads 2] [--batch 100]

Measures, each after a short warm-up, in --rounds interleaved rounds (the median run of each is reported): the no-op
(bench/noop.py) with single-event bodies, served with the service's own uvicorn configuration, and with plain
uvicorn settings; the api role (`analytics serve --role api --no-migrate`, a bench database and Redis prefix, a queue
cap of 10^9) on POST /api/ingestion/event; the same api on POST /api/ingestion/events with --batch events per
request. Every event is distinct (bench/wrk/ingest.lua). No writer runs: the queue grows during a run and is deleted
after each.
Then, unless --profile-seconds is 0, py-spy profiles of the no-op and of the api on single events, each under the
same wrk load in a separate, unmeasured run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

import redis.asyncio as aioredis
from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

from bench import profiling
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
    delete_prefix,
    fmt_ms,
    free_port,
    machine_busy,
    met,
    plot_percentile_curves,
    redis_pid,
    server_versions,
)
from bench.results import plot_path, record_result

LUA: Final = Path(__file__).with_name("wrk") / "ingest.lua"
PREFIX: Final = "bench-ingest"
DATABASE: Final = "bench_ingest"
QUEUE_CAP: Final = 1_000_000_000
SINGLE_PATH: Final = "/api/ingestion/event"
BATCH_PATH: Final = "/api/ingestion/events"
WARMUP_S: Final = 3


@dataclass
class WrkRun:
    name: str
    events_per_request: int
    requests: int
    seconds: float
    errors: dict[str, int]
    percentiles_us: list[tuple[float, float]]
    max_us: float
    cores: dict[str, float] = field(default_factory=dict)
    queued: int | None = None
    rss_peak_mb: float = 0.0
    all_rates: list[float] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.requests_per_s * self.events_per_request

    def latency_ms(self, percentile: float) -> float:
        return next(value for p, value in self.percentiles_us if p >= percentile) / 1000

    def line(self) -> str:
        errors = ", ".join(f"{name} {count}" for name, count in self.errors.items() if count) or "none"
        cores = ", ".join(f"{name} {value:.2f}" for name, value in self.cores.items())
        queued = "" if self.queued is None else f"; Redis received {self.queued:,} events"
        rates = ""
        if len(self.all_rates) > 1:
            rates = f" (median run of {len(self.all_rates)}: {', '.join(f'{rate:,.0f}' for rate in self.all_rates)})"
        server_cores = next(iter(self.cores.values()), 0.0)
        cpu = f"; server CPU {server_cores / self.requests_per_s * 1e6:.1f} µs/request" if self.cores else ""
        return (
            f"{self.name}: {self.requests_per_s:,.0f} req/s{rates}, {self.events_per_s:,.0f} events/s{cpu}; latency "
            f"p50 {fmt_ms(self.latency_ms(50))}, p99 {fmt_ms(self.latency_ms(99))}, "
            f"p99.9 {fmt_ms(self.latency_ms(99.9))}, max {fmt_ms(self.max_us / 1000)}; "
            f"errors: {errors}; cores used: {cores}{queued}"
        )


def run_wrk(
    name: str,
    port: int,
    path: str,
    batch: int,
    args: argparse.Namespace,
    duration_s: float,
    watch: Mapping[str, int],
    *,
    progress: bool = True,
    shape: str = "v1",
) -> WrkRun:
    """One wrk run; `watch` names processes whose CPU use over the run is reported next to wrk's own; `shape` is
    the events' (bench/wrk/ingest.lua: `v1` or `browser`)."""
    env = {
        **os.environ,
        "BENCH_PATH": path,
        "BENCH_BATCH": str(batch),
        "BENCH_RUN": str(time.time_ns() % 10**9),
        "BENCH_SHAPE": shape,
    }
    argv = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}{path}",
    ]
    before = {label: cpu_seconds(pid) for label, pid in watch.items()}
    busy_before = machine_busy()
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    bar = tqdm(total=round(duration_s), desc=name, unit="s", leave=False, disable=not progress, file=sys.stderr)
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        bar.n = min(round(duration_s), int(time.monotonic() - started))
        bar.refresh()
        time.sleep(0.25)
    bar.close()
    elapsed = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    lines = [line for line in output.splitlines() if line.startswith("BENCH ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output}")
    report = json.loads(lines[-1].removeprefix("BENCH "))
    cores = {label: (cpu_seconds(pid) - before[label]) / elapsed for label, pid in watch.items()}
    cores["wrk"] = (usage.ru_utime + usage.ru_stime) / elapsed
    # Whatever else kept the machine busy (the other engineer's tests, PostgreSQL, …): a measure of interference.
    machine = (machine_busy() - busy_before) / elapsed
    cores["rest of machine (other users, kernel)"] = max(0.0, machine - sum(cores.values()))
    return WrkRun(
        name=name,
        events_per_request=max(batch, 1),
        requests=report["requests"],
        seconds=report["duration_us"] / 1e6,
        errors={
            "non-2xx": report["status_errors"],
            "connect": report["connect_errors"],
            "read": report["read_errors"],
            "write": report["write_errors"],
            "timeout": report["timeouts"],
        },
        percentiles_us=[(float(p), float(value)) for p, value in report["percentiles_us"]],
        max_us=float(report["latency_max_us"]),
        cores=cores,
    )


def profile_under_load(label: str, service: Service, path: str, batch: int, args: argparse.Namespace) -> list[str]:
    """py-spy under the same wrk load, in a separate, unmeasured run.

    Non-blocking and Python frames only: C time is charged to the Python frame that called it (a socket write to
    `RequestResponseCycle.send`), and uvloop's own C work (reading sockets, between callbacks) to the loop. `--native`
    needs blocking sampling, which was seen to over-sample syscalls (getpid, write) several times over.
    """
    if not args.profile_seconds:
        return []
    if profiling.py_spy() is None:
        return [f"{label} profile: skipped, py-spy is not installed (pip install py-spy)"]
    result: list[profiling.Profile | str] = []
    sampler = threading.Thread(target=lambda: result.append(profiling.record(service.pid, args.profile_seconds)))
    sampler.start()
    run_wrk(f"profiling {label}", service.port, path, batch, args, args.profile_seconds + 2, {})
    sampler.join()
    profile = result[0]
    if isinstance(profile, str):
        return [f"{label} profile: {profile}"]
    lines = profile.lines(
        14,
        idle="in the event loop (epoll, or uvloop's C code: socket reads, callbacks)",
        busy="in Python frames",
        inclusive=False,  # non-blocking samples of deep coroutine chains are sometimes cut short: self time only
    )
    return [f"{label} profile (py-spy, {args.profile_seconds:g} s under the same wrk): {lines[0]}"] + [
        f"{label} profile: {line}" for line in lines[1:]
    ]


def noop_service(server: str) -> Service:
    port = free_port()
    argv = [sys.executable, "-m", "bench.noop", "--port", str(port), "--server", server]
    return Service(argv=argv, env=dict(os.environ), port=port, name=f"ASGI no-op ({server})")


@dataclass
class Target:
    name: str
    service: Service
    path: str
    batch: int
    watch: dict[str, int]
    runs: list[WrkRun] = field(default_factory=list)

    def median(self) -> WrkRun:
        """The run with the median rate; it carries every run's rate and the highest RSS seen in any of them."""
        ordered = sorted(self.runs, key=lambda run: run.requests_per_s)
        middle = ordered[(len(ordered) - 1) // 2]
        middle.all_rates = [run.requests_per_s for run in self.runs]
        middle.rss_peak_mb = max(run.rss_peak_mb for run in self.runs)
        return middle


async def measure(args: argparse.Namespace) -> tuple[list[WrkRun], list[str], list[str]]:
    """Every target is up for the whole run; the rounds interleave them, so a burst of load from other users of the
    machine hits one run of each target rather than all runs of one."""
    context = [await server_versions(args.database_url, args.redis_url)]
    profiles: list[str] = []
    async with bench_redis(args.redis_url, PREFIX) as client, bench_database(args.database_url, DATABASE) as db_url:
        redis_server = await redis_pid(client)
        env = {"ANALYTICS_QUEUE_MAX_LENGTH": str(QUEUE_CAP)}
        api = analytics_service("api", database_url=db_url, redis_url=args.redis_url, prefix=PREFIX, extra_env=env)
        noop = noop_service("service")
        plain = noop_service("plain")
        with noop, plain, api:
            api_watch = {"api": api.pid, "redis": redis_server}
            targets = [
                Target("ASGI no-op, service's uvicorn config", noop, SINGLE_PATH, 0, {"server": noop.pid}),
                Target("ASGI no-op, plain uvicorn", plain, SINGLE_PATH, 0, {"server": plain.pid}),
                Target("single event", api, SINGLE_PATH, 0, api_watch),
                Target(f"batch of {args.batch}", api, BATCH_PATH, args.batch, api_watch),
            ]
            for round_number in range(1, args.rounds + 1):
                for target in targets:
                    label = f"{target.name}, round {round_number}/{args.rounds}"
                    run_wrk(
                        "warm-up", target.service.port, target.path, target.batch, args, WARMUP_S, {}, progress=False
                    )
                    await delete_prefix(client, PREFIX)
                    with RssSampler(target.service.pid) as rss:
                        run = run_wrk(
                            label, target.service.port, target.path, target.batch, args, args.duration, target.watch
                        )
                    run.name = target.name
                    run.rss_peak_mb = rss.peak_mb
                    if target.service is api:
                        run.queued = await queue_length(client)
                        await delete_prefix(client, PREFIX)
                    target.runs.append(run)
            profiles += profile_under_load("no-op", noop, SINGLE_PATH, 0, args)
            profiles += profile_under_load("api single event", api, SINGLE_PATH, 0, args)
            await delete_prefix(client, PREFIX)
    return [target.median() for target in targets], context, profiles


async def queue_length(client: aioredis.Redis) -> int:
    return await cast("Awaitable[int]", client.llen(f"{{{PREFIX}}}:queue"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="server to create bench_ingest on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each target, interleaved (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=100, help="events per batch request (default: %(default)s)")
    parser.add_argument(
        "--profile-seconds", type=float, default=10, help="py-spy run of the no-op and the api afterwards (0: none)"
    )
    args = parser.parse_args()
    with Interference() as interference:
        runs, context, profiles = asyncio.run(measure(args))
    noop, plain, single, batch = runs
    ratio = single.requests_per_s / noop.requests_per_s
    lines = [run.line() for run in runs]
    lines += [
        f"single event / no-op (both on the service's uvicorn config): {ratio:.2f}x (target >= 0.7x: "
        f"{met(ratio >= 0.7)}); single event / plain-uvicorn no-op: "
        f"{single.requests_per_s / plain.requests_per_s:.2f}x",
        f"single event p99 {fmt_ms(single.latency_ms(99))} at {args.connections} connections "
        f"(target <= 20 ms: {met(single.latency_ms(99) <= 20)})",
        f"batch: {batch.events_per_s:,.0f} events/s (target >= 150,000: {met(batch.events_per_s >= 150_000)})",
        f"api RSS peak under load: single {single.rss_peak_mb:.0f} MB, batch {batch.rss_peak_mb:.0f} MB; "
        f"no-op {noop.rss_peak_mb:.0f} MB",
        *profiles,
    ]
    plot = plot_percentile_curves(
        plot_path("ingest-latency"),
        f"wrk, {args.connections} connections, {args.threads} threads, median of {args.rounds} runs of "
        f"{args.duration:g} s",
        [
            (
                "one event per request",
                {
                    f"api {single.requests_per_s:,.0f} req/s": [(p, v / 1000) for p, v in single.percentiles_us],
                    f"no-op {noop.requests_per_s:,.0f} req/s": [(p, v / 1000) for p, v in noop.percentiles_us],
                    f"plain-uvicorn no-op {plain.requests_per_s:,.0f} req/s": [
                        (p, v / 1000) for p, v in plain.percentiles_us
                    ],
                },
            ),
            (
                f"{args.batch} events per request",
                {f"api {batch.events_per_s:,.0f} events/s": [(p, v / 1000) for p, v in batch.percentiles_us]},
            ),
        ],
    )
    context += [
        *wrk_context(args, WARMUP_S, "wrk, the server under test, Redis and PostgreSQL share the 2 cores"),
        *interference.lines(),
    ]
    record_result("ingest throughput and latency", lines, context=context, plots=[plot])


def wrk_context(args: argparse.Namespace, warmup_s: float, setup: str, started: float | None = None) -> list[str]:
    """How interleaved wrk rounds were run, for an entry's context (`started`: the run's monotonic start)."""
    wall = "" if started is None else f"; wall time {time.monotonic() - started:.0f} s"
    return [
        f"wrk {args.threads} threads, {args.connections} connections, {args.rounds} rounds of {args.duration:g} s "
        f"runs, each after a {warmup_s} s warm-up, targets interleaved; figures from each target's median run; "
        f"{setup}{wall}",
        "latency is wrk's (closed loop: no coordinated-omission correction)",
    ]


if __name__ == "__main__":
    main()
