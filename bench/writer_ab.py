"""Writer A/B: the writer role of two source trees draining the same backlog, interleaved in one run.

    python -m bench.writer_ab --before /tmp/wt-before [--events 300000] [--rounds 2] [--lanes 2]

"before" is another checkout (e.g. `git worktree add /tmp/wt-before <commit>`), run from its own directory on a
database migrated by its own migrations, draining the records that version's api queued (v1's six fields). "after"
is this tree, draining the same events twice: as v1 records (what an upgrade finds queued) and as enriched records
(every v2 column filled, as the api queues a browser's events now). Each drain gets a fresh database and the same
events from bench/data.py; rounds interleave the targets; the median of each is reported, with the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import asyncpg
import msgspec

from analytics.config import DEFAULTS
from analytics.events.record import Event, encode_event
from analytics.queue.keys import QueueKeys
from bench.data import EventStream
from bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Interference,
    bench_database,
    bench_redis,
    server_versions,
    tree_description,
)
from bench.results import record_result
from bench.writer import drain, fill

PREFIX: Final = "bench-writer-ab"
DATABASE: Final = "bench_writer_ab"
BROWSERS: Final = (
    ("Chrome", "131", "Windows", "10", "desktop"),
    ("Mobile Safari", "17", "iOS", "17.5", "mobile"),
    ("Firefox", "133", "Ubuntu", None, "desktop"),
    ("Chrome Mobile", "131", "Android", "14", "mobile"),
    ("Edge", "131", "Mac OS X", "10.15", "desktop"),
    ("Mobile Safari", "17", "iOS", "17.5", "tablet"),
)
REFERRERS: Final = (
    (None, None),
    ("https://www.google.com/", "google.com"),
    ("https://news.ycombinator.com/item", "news.ycombinator.com"),
    ("https://t.co/abc", "t.co"),
)
COUNTRIES: Final = ("US", "DE", "GB", "FR", "IN", "BR", "JP", None)


def v1_record(event: Event) -> bytes:
    """What the previous api queued: site_id, event_type, path, user_id, µs, accepted ms."""
    return msgspec.msgpack.encode(
        (event.site_id, event.event_type, event.path, event.user_id, event.ts_us, event.accepted_ms)
    )


def enriched_records(seed: int) -> Callable[[Event], bytes]:
    """Each event with every v2 field filled, deterministically: an event id (from the tracker), a visitor, a
    referrer and source, a campaign on one event in five, a browser, a country, props on custom events."""
    draw = random.Random(seed)

    def encode(event: Event) -> bytes:
        referrer, source = draw.choice(REFERRERS)
        campaign = draw.random() < 0.2
        browser, browser_version, os_name, os_version, device = draw.choice(BROWSERS)
        event.event_id = f"{draw.getrandbits(128):032x}"
        event.visitor = event.user_id or f"{draw.getrandbits(64):016x}"
        event.referrer = referrer
        event.source = "newsletter" if campaign else source
        event.utm_source, event.utm_medium, event.utm_campaign = (
            ("newsletter", "email", "launch") if campaign else (None, None, None)
        )
        event.browser, event.browser_version, event.os, event.os_version, event.device = (
            browser,
            browser_version,
            os_name,
            os_version,
            device,
        )
        event.country = draw.choice(COUNTRIES)
        event.props = '{"plan": "pro", "seats": 3}' if event.event_type != "page_view" else None
        return encode_event(event)

    return encode


@dataclass
class Target:
    name: str
    tree: Path | None
    encode: Callable[[Event], bytes]
    rows_per_s: list[float] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rows_per_s)


async def measure(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    before_tree = Path(args.before)
    context = [await server_versions(args.database_url, args.redis_url), f"before: {tree_description(before_tree)}"]
    targets = [
        Target("before, v1 records", before_tree, v1_record),
        Target("after, v1 records", None, v1_record),
        Target("after, enriched records", None, enriched_records(args.seed)),
    ]
    keys = QueueKeys(PREFIX)
    async with bench_redis(args.redis_url, PREFIX) as client:
        for round_number in range(1, args.rounds + 1):
            for target in targets:
                stream = EventStream(args.seed, args.events, args.days)
                async with bench_database(args.database_url, DATABASE, tree=target.tree) as url:
                    await fill(client, keys, stream, args.events, args.batch_size, target.encode)
                    result, _ = await drain(client, keys, args.events, url, args.database_url, args, tree=target.tree)
                    connection = await asyncpg.connect(url)
                    target.stored.append(await connection.fetchval("SELECT count(*) FROM events"))
                    await connection.close()
                target.rows_per_s.append(result.rows_per_s)
                print(f"round {round_number}/{args.rounds}, {target.name}: {result.rows_per_s:,.0f} rows/s")
    before, after_v1, after_enriched = (target.median for target in targets)
    lines = [
        f"{target.name}: median {target.median:,.0f} rows/s "
        f"(runs: {', '.join(f'{rate:,.0f}' for rate in target.rows_per_s)}); rows stored a drain: "
        f"{', '.join(f'{count:,}' for count in target.stored)}"
        for target in targets
    ]
    lines += [
        f"after, v1 records / before: {after_v1 / before:.2f}x",
        f"after, enriched records / before: {after_enriched / before:.2f}x (target >= 0.85x)",
    ]
    return lines, context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the other source tree (a git worktree)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help=f"server to create {DATABASE} on")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--events", type=int, default=300_000, help="backlog per drain (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lanes", type=int, default=DEFAULTS.writer_concurrency, help="ANALYTICS_WRITER_CONCURRENCY")
    parser.add_argument("--writers", type=int, default=1, help="writer processes per drain (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="ANALYTICS_BATCH_SIZE")
    parser.add_argument("--days", type=float, default=1, help="time span of the backlog (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.before = str(Path(args.before).resolve())
    with Interference() as interference:
        lines, context = asyncio.run(measure(args))
    context += [
        f"{args.events:,} events a drain from bench/data.py, {args.lanes} lanes, batches of {args.batch_size:,}; "
        f"{args.rounds} interleaved rounds",
        *interference.lines(),
    ]
    record_result("writer A/B (enriched columns)", lines, context=context)


if __name__ == "__main__":
    main()
