"""In-process cost of one ingest request: the `App` fast path against the same handler behind Starlette's routing,
and the cost of the metric calls on that path.

    python -m bench.app_overhead [--requests 200000] [--rounds 5] [--redis-url redis://127.0.0.1:6379/0]

The ASGI app that `create_app` builds is called directly (no server, no sockets) with a fake receive that hands
over a typical event body and a send that drops the response:
- "fast path": `App.__call__`, which sends the two hot POSTs straight to their `Ingest` handler;
- "Starlette routing": the same endpoints (`App.hot_posts`: CORS around `Ingest`) mounted as routes of a Starlette
  app, reached through its middleware and router;
- each with a no-op pusher (the app's own cost), then with the real `Pusher` on Redis under 64 concurrent requests
  (coalesced pushes, as in production);
- with the request's metric call (`Counter.inc`) replaced by a no-op, and the metric calls timed alone;
- with the rate limits per client and per site on (never exceeded), then with the site allow-list too.
Figures are the median of --rounds rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, cast

import asyncpg
import uvloop
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Scope

from analytics.config import Settings
from analytics.observability.metrics import Metrics
from analytics.queue.client import QueueSnapshot
from analytics.queue.connection import connect_redis
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import Pusher
from analytics.web.access import AccessRules
from analytics.web.app import App, Ingestion, create_app
from analytics.web.health import Readiness
from analytics.web.ingest import Ingest
from bench.harness import DEFAULT_REDIS_URL, Interference, delete_prefix
from bench.results import record_result

PREFIX: Final = "bench-overhead"
CONCURRENCY: Final = 64
EVENT: Final = (
    b'{"site_id":"site-abc-123","event_type":"page_view","path":"/pricing",'
    b'"user_id":"user-xyz-789","timestamp":"2025-11-12T19:30:01Z"}'
)
BATCH: Final = b"[" + b",".join([EVENT] * 100) + b"]"


class NoopPusher:
    """Stands in for `Pusher`: accepts every push at once."""

    async def push(self, records: Sequence[bytes]) -> None:
        return None


class NoopMetric:
    def inc(self, amount: float = 1) -> None:
        return None


async def _no_snapshot() -> QueueSnapshot:
    return QueueSnapshot(queued=0, dead=0, processing={}, writers_alive=0)


def build(pusher: Pusher | NoopPusher, rules: AccessRules | None = None) -> App:
    ingestion = Ingestion(
        pusher=cast(Pusher, pusher),
        pool=cast(asyncpg.Pool, None),
        rollup_pool=cast(asyncpg.Pool, None),
        max_body_bytes=1 << 20,
        max_batch_events=1000,
        rules=rules or AccessRules(),
    )
    return create_app(Metrics(), Readiness({}, ()), _no_snapshot, ingestion)


def scope_for(path: str, body: bytes) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:3000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3000),
        "state": {},
    }


Request = Callable[[], Awaitable[None]]


def requester(app: ASGIApp, path: str, body: bytes) -> tuple[Request, list[int]]:
    """A zero-argument coroutine function performing one request; the statuses it saw are counted in the list."""
    template = scope_for(path, body)
    message: Message = {"type": "http.request", "body": body, "more_body": False}
    statuses = [0]

    async def receive() -> Message:
        return message

    async def send(reply: Message) -> None:
        if reply["type"] == "http.response.start" and reply["status"] != 202:
            statuses[0] += 1

    async def one() -> None:
        await app(dict(template), receive, send)

    return one, statuses


async def sequential_us(request: Request, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await request()
    return (time.perf_counter() - started) / count * 1e6


async def concurrent_us(request: Request, count: int) -> float:
    async def worker() -> None:
        for _ in range(count // CONCURRENCY):
            await request()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (time.perf_counter() - started) / (count // CONCURRENCY * CONCURRENCY) * 1e6


def routed(app: App) -> Starlette:
    """The app's hot endpoints behind Starlette's router, as any other route is served."""
    return Starlette(routes=[Route(path, endpoint, methods=["POST"]) for path, endpoint in app.hot_posts.items()])


def without_metrics(app: App) -> None:
    """Replace the success-path metric of the app's Ingest handlers by a no-op."""
    replaced = 0
    for endpoint in app.hot_posts.values():
        handler = endpoint.app
        if isinstance(handler, Ingest):
            handler._events_accepted = cast(Any, NoopMetric())
            replaced += 1
    if not replaced:
        raise RuntimeError("no Ingest handler found among the app's endpoints")


async def median_us(measure: Callable[[], Awaitable[float]], rounds: int) -> float:
    return statistics.median([await measure() for _ in range(rounds)])


async def measure(args: argparse.Namespace) -> list[str]:
    n, rounds = args.requests, args.rounds
    lines: list[str] = []
    app = build(NoopPusher())
    fast, fast_errors = requester(app, "/api/ingestion/event", EVENT)
    router = routed(app)
    routed_one, routed_errors = requester(router, "/api/ingestion/event", EVENT)
    fast_batch, _ = requester(app, "/api/ingestion/events", BATCH)
    routed_batch, _ = requester(router, "/api/ingestion/events", BATCH)
    await sequential_us(fast, 2000)
    await sequential_us(routed_one, 2000)
    fast_us = await median_us(lambda: sequential_us(fast, n), rounds)
    routed_us = await median_us(lambda: sequential_us(routed_one, n), rounds)
    fast_batch_us = await median_us(lambda: sequential_us(fast_batch, n // 50), rounds)
    routed_batch_us = await median_us(lambda: sequential_us(routed_batch, n // 50), rounds)
    if fast_errors[0] or routed_errors[0]:
        raise RuntimeError("the app answered something else than 202")
    lines += [
        f"no-op pusher, single event: fast path {fast_us:.2f} µs/request, through Starlette routing "
        f"{routed_us:.2f} µs/request: the fast path saves {routed_us - fast_us:.2f} µs "
        f"({(routed_us - fast_us) / routed_us:.0%})",
        f"no-op pusher, batch of 100: fast path {fast_batch_us:.1f} µs/request, through Starlette routing "
        f"{routed_batch_us:.1f} µs/request",
    ]

    without_metrics(app)
    bare_us = await median_us(lambda: sequential_us(fast, n), rounds)
    lines.append(
        f"no-op pusher, single event, fast path with the metric call replaced by a no-op: {bare_us:.2f} µs/request "
        f"(metrics cost {fast_us - bare_us:+.2f} µs/request in place)"
    )

    # The access checks of issue 6, on (limits so high they never refuse) against off.
    limited = AccessRules.from_settings(
        Settings(rate_limit_ip=1e9, rate_limit_ip_burst=1 << 30, rate_limit_site=1e9, rate_limit_site_burst=1 << 30)
    )
    guarded = AccessRules.from_settings(
        Settings(
            rate_limit_ip=1e9,
            rate_limit_ip_burst=1 << 30,
            rate_limit_site=1e9,
            rate_limit_site_burst=1 << 30,
            sites=("site-abc-123",),
        )
    )
    limited_fast, limited_errors = requester(build(NoopPusher(), limited), "/api/ingestion/event", EVENT)
    guarded_fast, guarded_errors = requester(build(NoopPusher(), guarded), "/api/ingestion/event", EVENT)
    open_fast, _ = requester(build(NoopPusher()), "/api/ingestion/event", EVENT)
    await sequential_us(limited_fast, 2000)
    open_us = await median_us(lambda: sequential_us(open_fast, n), rounds)
    limited_us = await median_us(lambda: sequential_us(limited_fast, n), rounds)
    guarded_us = await median_us(lambda: sequential_us(guarded_fast, n), rounds)
    if limited_errors[0] or guarded_errors[0]:
        raise RuntimeError("the guarded app answered something else than 202")
    lines.append(
        f"no-op pusher, single event, fast path: no access checks {open_us:.2f} µs/request; rate limits per client "
        f"and per site on (never exceeded) {limited_us:.2f} µs ({limited_us - open_us:+.2f}); plus the "
        f"ANALYTICS_SITES allow-list {guarded_us:.2f} µs ({guarded_us - open_us:+.2f})"
    )

    metrics = Metrics()
    counter = metrics.events_accepted
    labelled = metrics.rejected["invalid"]
    histogram = metrics.write_seconds
    timings = {
        "Counter.inc(1) (events accepted, once per 202)": lambda: counter.inc(1),
        "labelled Counter.inc() (rejections)": labelled.inc,
        "Histogram.observe() (writer, once per batch)": lambda: histogram.observe(0.01),
        "a no-op call, for reference": NoopMetric().inc,
    }
    alone = {name: min(timeit.repeat(call, number=n, repeat=rounds)) / n * 1e6 for name, call in timings.items()}
    lines.append(
        "metric calls timed alone (timeit, best of rounds): "
        + "; ".join(f"{name} {value:.3f} µs" for name, value in alone.items())
    )

    client = connect_redis(args.redis_url)
    try:
        await delete_prefix(client, PREFIX)
        real = build(Pusher(client, QueueKeys(PREFIX), 10**9))
        fast_redis, fast_redis_errors = requester(real, "/api/ingestion/event", EVENT)
        routed_redis, _ = requester(routed(real), "/api/ingestion/event", EVENT)
        await concurrent_us(fast_redis, 6400)
        fast_redis_us = await median_us(lambda: concurrent_us(fast_redis, n // 4), rounds)
        routed_redis_us = await median_us(lambda: concurrent_us(routed_redis, n // 4), rounds)
        if fast_redis_errors[0]:
            raise RuntimeError("the app with a real pusher answered something else than 202")
        lines.append(
            f"real Pusher on Redis, {CONCURRENCY} concurrent requests (coalesced pushes), single event: fast path "
            f"{fast_redis_us:.2f} µs/request ({1e6 / fast_redis_us:,.0f} req/s in one process without HTTP), "
            f"through Starlette routing {routed_redis_us:.2f} µs/request"
        )
    finally:
        await delete_prefix(client, PREFIX)
        await client.aclose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--requests", type=int, default=200_000, help="requests per round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with Interference() as interference:
        lines = uvloop.run(measure(args))
    context = ["in-process, uvloop, one core; the ASGI app called directly", *interference.lines()]
    record_result("app overhead per ingest request", lines, context=context)


if __name__ == "__main__":
    main()
