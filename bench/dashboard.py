"""The dashboard's load time against a database of bench data, in Debian's Chromium: the whole page, and each API
call it makes.

    python -m bench.reports --levels 1000000,10000000 --keep     # once: loads and keeps the bench_reports database
    python -m bench.dashboard [--loads 20] [--busiest-loads 5] [--budget 120]

Uses the database `bench.reports --keep` left (bench/data.py's VisitStream: 300 sites, Zipf traffic over the 90 days
ending 2025-11-30), migrated to this checkout first. Starts the api role (`analytics serve --role api`) on it and opens
`/dashboard/<site>?period=30d&date=2025-11-30&timezone=UTC` in a fresh tab, one load at a time, for sites drawn
uniformly from those with page views and for the BUSIEST with the most. A load is timed from the navigation to the
report drawn with no request pending (`#report[aria-busy=false]`) or an error shown (a 503 when the database did not
answer within the reports' 10-second deadline), and then to the network being idle (the live count
asks after the report). Each API call's time is the browser's own (Resource Timing: request start to response end,
queueing for one of the browser's six connections to the origin excluded), grouped by endpoint and property.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import uvloop
from playwright.async_api import Browser, async_playwright

from analytics.store.migrations import migrate
from bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Interference,
    analytics_service,
    bench_redis,
    database_url_for,
    server_versions,
    summary_ms,
)
from bench.reports import ANCHOR, BUSIEST, DATABASE, sites_by_views
from bench.results import record_result
from tests.helpers.browser import CHROMIUM_ARGS, DESKTOP_CHROME, chromium_executable

PREFIX: Final = "bench-dashboard"
VIEW: Final = {"period": "30d", "date": ANCHOR, "timezone": "UTC"}
LOAD_TIMEOUT_MS: Final = 60_000
# The report drawn with no request pending; a load that ends in an error shows `#status.error` instead.
DRAWN: Final = "#report:not([hidden])[aria-busy='false']"
# Resource Timing of the API calls a load made: their URL, duration (ms) and status.
API_TIMINGS: Final = """() => performance.getEntriesByType('resource')
  .filter((entry) => new URL(entry.name).pathname.startsWith('/api/'))
  .map((entry) => [entry.name, entry.responseEnd - entry.requestStart, entry.responseStatus])"""


@dataclass
class Group:
    name: str
    drawn_ms: list[float] = field(default_factory=list)  # navigation to the report drawn
    idle_ms: list[float] = field(default_factory=list)  # navigation to the network idle
    calls: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # ms, by call kind
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    sites: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # loads that ended in an error message, and which


def call_kind(url: str) -> str:
    """`aggregate`, `timeseries`, `breakdown path`, ... for one API call of the page."""
    parts = urlsplit(url)
    kind = parts.path.rsplit("/", 1)[-1]
    prop = parse_qs(parts.query).get("property")
    return f"{kind} {prop[0]}" if prop else kind


async def one_load(browser: Browser, base_url: str, site: str, group: Group) -> None:
    context = await browser.new_context(user_agent=DESKTOP_CHROME.format(browser.version))
    try:
        page = await context.new_page()
        started = time.perf_counter()
        await page.goto(f"{base_url}/dashboard/{site}?{urlencode(VIEW)}", timeout=LOAD_TIMEOUT_MS)
        await page.wait_for_selector(f"{DRAWN}, #status.error", timeout=LOAD_TIMEOUT_MS)
        if await page.locator(DRAWN).count() == 0:
            group.failed.append(f"{site}: {await page.text_content('#status')}")
        group.drawn_ms.append((time.perf_counter() - started) * 1000)
        await page.wait_for_load_state("networkidle", timeout=LOAD_TIMEOUT_MS)
        group.idle_ms.append((time.perf_counter() - started) * 1000)
        for url, duration_ms, status in await page.evaluate(API_TIMINGS):
            group.calls[call_kind(url)].append(duration_ms)
            group.statuses[status] += 1
        group.sites.append(site)
    finally:
        await context.close()


async def measure(args: argparse.Namespace) -> tuple[list[Group], list[str]]:
    url = database_url_for(args.database_url, DATABASE)
    connection = await asyncpg.connect(url)
    try:
        events = await connection.fetchval("SELECT count(*) FROM events")
        settings = [f"{name} {await connection.fetchval(f'SHOW {name}')}" for name in ("shared_buffers", "work_mem")]
    finally:
        await connection.close()
    await asyncio.to_thread(migrate, url)
    context = [
        await server_versions(args.database_url, args.redis_url),
        f"database {DATABASE} as `bench.reports --keep` left it: {events:,} events; PostgreSQL settings as installed: "
        + ", ".join(settings),
    ]
    by_views = await sites_by_views(url)
    uniform = random.Random(args.seed).choices(sorted(by_views), k=args.loads)
    busiest = random.Random(args.seed).choices(by_views[:BUSIEST], k=args.busiest_loads)
    executable = chromium_executable()
    assert executable is not None, "Chromium is needed: apt-get install -y chromium"
    groups = [Group("uniform"), Group("busiest")]
    async with bench_redis(args.redis_url, PREFIX):
        with analytics_service("api", database_url=url, redis_url=args.redis_url, prefix=PREFIX) as api:
            base_url = f"http://127.0.0.1:{api.port}"
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
                try:
                    await one_load(browser, base_url, by_views[-1], Group("warm-up"))
                    for group, sites in zip(groups, (uniform, busiest), strict=True):
                        deadline = time.monotonic() + args.budget
                        for site in sites:
                            if time.monotonic() > deadline:
                                break
                            await one_load(browser, base_url, site, group)
                            print(f"  {group.name} {site}: {group.drawn_ms[-1]:,.0f} ms", flush=True)
                finally:
                    await browser.close()
    return groups, context


def group_lines(group: Group) -> list[str]:
    drawn, idle = summary_ms([ms / 1000 for ms in group.drawn_ms]), summary_ms([ms / 1000 for ms in group.idle_ms])
    statuses = ", ".join(f"{status}: {count:,}" for status, count in sorted(group.statuses.items()))
    failures = f"; {len(group.failed)} of them ended in an error: {'; '.join(group.failed)}" if group.failed else ""
    lines = [
        f"{group.name} sites, {len(group.drawn_ms)} loads{failures}: page drawn (or the error shown) p50 "
        f"{drawn['p50']:,.0f} ms, p99 {drawn['p99']:,.0f} ms, max {drawn['max']:,.0f} ms; network idle p50 "
        f"{idle['p50']:,.0f} ms, p99 {idle['p99']:,.0f} ms; {sum(group.statuses.values()):,} API calls ({statuses})",
    ]
    ranked = sorted(group.calls.items(), key=lambda item: -summary_ms([ms / 1000 for ms in item[1]])["p99"])
    calls = "; ".join(
        f"{kind} p50 {summary['p50']:,.1f} / p99 {summary['p99']:,.1f}"
        for kind, summary in ((kind, summary_ms([ms / 1000 for ms in times])) for kind, times in ranked)
    )
    lines.append(f"{group.name} sites, each API call of a load (ms, slowest first): {calls}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help=f"server holding {DATABASE}")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--loads", type=int, default=20, help="page loads for sites drawn uniformly")
    parser.add_argument("--busiest-loads", type=int, default=5, help=f"page loads for the {BUSIEST} busiest sites")
    parser.add_argument("--budget", type=float, default=300.0, help="most seconds of loads per group")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with Interference() as interference:
        groups, context = uvloop.run(measure(args))
    lines = [line for group in groups for line in group_lines(group)]
    context += [
        f"view: {urlencode(VIEW)}; one load at a time, each in a fresh browser context (no cache, no cookies); "
        "Chromium, the api, PostgreSQL and Redis share the machine's cores",
        *interference.lines(),
    ]
    record_result("Dashboard load time against stored events", lines, context=context)


if __name__ == "__main__":
    main()
