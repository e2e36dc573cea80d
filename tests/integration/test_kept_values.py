"""Breakdowns from kept values (migrations/0015.report_values.sql, analytics/stats/values.py): the distinct keeper's
values of each past UTC day equal a count over the events sent; breakdowns over kept days, parts of days and today,
in any zone, ranked by any event metric and paged, equal a brute force over the events sent and the same report
from raw events; they read the kept values while their window's cells hold and raw events once a late event lands;
an erasure forgets them; a day of tied values is ranked by the index."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.stats.keeper import keep_past_days
from analytics.stats.sketch import packed_elements
from analytics.store import queries
from analytics.store.erasure import erase_user
from tests.helpers.databases import migrated_before
from tests.helpers.servers import Client
from tests.integration.test_report_distincts import EVERY_EVENT, store

TODAY = date(2026, 10, 24)
FIRST = datetime.combine(TODAY - timedelta(days=3), time(), UTC)
VISIT_GAP = timedelta(minutes=30)
SOURCES = (None, "google.com", "news.ycombinator.com")
PATHS = ("/", "/a", "/b", "/B", "/é")


def visit_events(site: str) -> list[Event]:
    """Visits of a few minutes across the three days before TODAY and TODAY itself, some across UTC midnight; the
    landing event carries the source. Visitor `loyal` reads /a every day (its days' counts add up to more than its
    union); users on some."""
    events = []
    for number in range(120):
        user = f"u{number % 4}" if number % 5 == 1 else None
        # An event naming a user has the user as its visitor, as ingestion makes it.
        visitor = user or ("loyal" if number % 10 == 0 else f"v{number % 17}")
        start = FIRST + timedelta(minutes=47 * number + 23 * (number % 3))
        source = SOURCES[number % 3]
        for step in range(1 + number % 3):
            path = "/a" if visitor == "loyal" else PATHS[(number + step) % len(PATHS)]
            at = start + timedelta(minutes=9 * step)
            events.append(
                Event(
                    site,
                    "page_view" if step < 2 else "signup",
                    path,
                    user,
                    epoch_microseconds(at),
                    0,
                    visitor=visitor,
                    source=source if step == 0 else None,
                    event_id=f"{site}-{number}-{step}",
                )
            )
    return events


def instant(sent: Event) -> datetime:
    return datetime.fromtimestamp(sent.ts_us / 1e6, UTC)


def visit_sources(events: Iterable[Event]) -> dict[tuple[str, str | None, int], str | None]:
    """The oracle's sessions: each event's visit source (its visitor's first event after a 30-minute gap)."""
    by_visitor: dict[tuple[str, str | None], list[Event]] = defaultdict(list)
    for sent in events:
        by_visitor[sent.site_id, sent.visitor].append(sent)
    sources = {}
    for visitor_events in by_visitor.values():
        visitor_events.sort(key=lambda sent: sent.ts_us)
        landing = visitor_events[0]
        for before, sent in zip([None, *visitor_events], visitor_events, strict=False):
            if before is not None and instant(sent) - instant(before) > VISIT_GAP:
                landing = sent
            sources[sent.site_id, sent.visitor, sent.ts_us] = landing.source
    return sources


def brute_breakdown(
    events: list[Event], site: str, start: datetime, end: datetime, prop: str, names: tuple[str, ...]
) -> list[dict[str, Any]]:
    sources = visit_sources(events)
    groups: dict[str | None, list[Event]] = defaultdict(list)
    for sent in events:
        if sent.site_id == site and start <= instant(sent) < end:
            value = sent.path if prop == "path" else sources[sent.site_id, sent.visitor, sent.ts_us]
            groups[value].append(sent)
    rows = [
        {
            prop: value,
            "pageviews": sum(sent.event_type == "page_view" for sent in group),
            "events": len(group),
            "visitors": len({sent.visitor for sent in group}),
            "users": len({sent.user_id for sent in group if sent.user_id is not None}),
        }
        for value, group in groups.items()
    ]
    rows.sort(key=lambda row: (-row[names[0]], row[prop] is None, row[prop] or ""))
    return [{key: row[key] for key in (prop, *names)} for row in rows]


def brute_day_values(events: list[Event]) -> dict[tuple[str, datetime, str, str | None], tuple[int, int, int, int]]:
    """The kept values the oracle expects: by site, past UTC day, dimension (path, source) and value."""
    expected = {}
    for site, back in itertools.product({sent.site_id for sent in events}, range(1, 4)):
        day = datetime.combine(TODAY - timedelta(days=back), time(), UTC)
        for prop in ("path", "source"):
            names = ("pageviews", "events", "visitors", "users")
            for row in brute_breakdown(events, site, day, day + timedelta(days=1), prop, names):
                expected[site, day, prop, row[prop]] = (row["pageviews"], row["events"], row["visitors"], row["users"])
    return expected


async def breakdown(client: httpx.AsyncClient, params: dict[str, str], filters: str = "") -> Any:
    response = await client.get("/api/v2/stats/breakdown", params={**params, "filters": filters})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def custom(site: str, first: date, last: date, zone: str = "UTC") -> dict[str, str]:
    return {"site_id": site, "period": "custom", "from": first.isoformat(), "to": last.isoformat(), "timezone": zone}


def bounds(first: date, last: date, zone: str) -> tuple[datetime, datetime]:
    tz = ZoneInfo(zone)
    start = datetime.combine(first, time(), tz)
    end = datetime.combine(last + timedelta(days=1), time(), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


# Multi-day ranges of kept days and raw ends (Kolkata, Chatham: parts of UTC days), through today (raw), one whole
# UTC day (ranked in the database).
RANGES = (
    (TODAY - timedelta(days=3), TODAY - timedelta(days=1), "UTC"),
    (TODAY - timedelta(days=3), TODAY - timedelta(days=1), "Asia/Kolkata"),
    (TODAY - timedelta(days=2), TODAY, "Pacific/Chatham"),
    (TODAY - timedelta(days=2), TODAY - timedelta(days=2), "UTC"),
)
METRIC_SETS = (("pageviews", "visitors"), ("visitors", "users"), ("users", "events", "pageviews"), ("events",))


async def assert_breakdowns_as_sent(
    client: httpx.AsyncClient, events: list[Event], site: str, ranges: Iterable[tuple[date, date, str]] = RANGES
) -> None:
    """Every range, by path and by source, in every metric set, whole and paged: a brute force over the events sent,
    and the same as raw events answer."""
    for (first, last, zone), prop, names in itertools.product(ranges, ("path", "source"), METRIC_SETS):
        expected = brute_breakdown(events, site, *bounds(first, last, zone), prop, names)
        for limit, page in ((100, 1), (2, 1), (2, 2)):
            params = {**custom(site, first, last, zone), "property": prop, "metrics": ",".join(names)}
            params.update(limit=str(limit), page=str(page))
            data = await breakdown(client, params)
            assert data["results"] == expected[(page - 1) * limit : page * limit], (first, last, zone, prop, names)
            assert data["total_rows"] == len(expected)
            assert (await breakdown(client, params, EVERY_EVENT))["results"] == data["results"]


async def test_kept_values_equal_a_count_over_the_events_sent(db: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    events = [*visit_events("alpha"), *visit_events("beta")[::2]]
    await store(db, events)
    kept = await keep_past_days(pool, TODAY, 5)
    assert kept.values == 6
    rows = await db.fetch(
        "SELECT site_id, day, dimension, value, pageviews, events, visitor_count, user_count, visitors, users "
        "FROM report_values WHERE dimension IN ('path', 'source')"
    )
    found = {
        (row["site_id"], row["day"], row["dimension"], row["value"]): (
            row["pageviews"],
            row["events"],
            row["visitor_count"],
            row["user_count"],
        )
        for row in rows
    }
    assert found == brute_day_values(events)
    assert all(len(row["visitors"]) == 8 * row["visitor_count"] for row in rows)
    dimensions = await db.fetchval("SELECT count(DISTINCT dimension) FROM report_values")
    assert dimensions == 17


async def test_breakdowns_over_kept_days_and_raw_parts_equal_a_brute_force(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    events = visit_events("alpha")
    await store(db, events)
    await keep_past_days(pool, TODAY, 5)
    async with client_with() as client:
        await assert_breakdowns_as_sent(client, events, "alpha")


async def test_breakdowns_read_kept_values_while_their_window_holds(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    events = visit_events("alpha")
    await store(db, events)
    await keep_past_days(pool, TODAY, 5)
    day = datetime.combine(TODAY - timedelta(days=2), time(), UTC)
    first, last = day.date() - timedelta(days=1), day.date()
    params = {**custom("alpha", first, last), "property": "path", "metrics": "pageviews"}
    one_day = {**custom("alpha", last, last), "property": "path", "metrics": "pageviews"}
    expected = brute_breakdown(events, "alpha", *bounds(first, last, "UTC"), "path", ("pageviews",))
    # Changed behind the reports' back, a kept day's values are what both a range and the day itself answer.
    await db.execute("UPDATE report_values SET pageviews = pageviews + 1000 WHERE value = '/B' AND day = $1", FIRST)
    async with client_with() as client:
        shown = {row["path"]: row["pageviews"] for row in (await breakdown(client, params))["results"]}
        assert shown["/B"] == {row["path"]: row["pageviews"] for row in expected}["/B"] + 1000
        await db.execute("UPDATE report_values SET pageviews = pageviews + 1000 WHERE value = '/b' AND day = $1", day)
        assert (await breakdown(client, one_day))["results"][0]["path"] == "/b"
        # A late event in the window of both days (the early hours of the day after FIRST): both are read raw.
        late = Event("alpha", "page_view", "/late", None, epoch_microseconds(day + timedelta(minutes=5)), 0)
        late.visitor = "late"
        await store(db, [late])
        events.append(late)
        expected = brute_breakdown(events, "alpha", *bounds(first, last, "UTC"), "path", ("pageviews",))
        assert (await breakdown(client, params))["results"] == expected
        assert (await keep_past_days(pool, TODAY, 5)).values == 2
        assert (await breakdown(client, params))["results"] == expected
        assert await db.fetchval("SELECT count(*) FROM report_values WHERE dimension = 'path' AND value = '/late'") == 1


async def test_an_erasure_forgets_the_kept_values(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    events = visit_events("alpha")
    await store(db, events)
    await keep_past_days(pool, TODAY, 5)
    erasure = await erase_user(pool, "alpha", "u1")
    assert erasure.events > 0
    assert await db.fetchval("SELECT count(*) FROM report_values") == 0
    assert await db.fetchval("SELECT count(*) FROM report_value_days") == 0
    remaining = [sent for sent in events if sent.user_id != "u1"]
    await keep_past_days(pool, TODAY, 5)
    erased_user_kept = await db.fetchval(
        "SELECT count(*) FROM report_values, generate_series(0, length(users) / 8 - 1) i "
        "WHERE substring(users FROM 8 * i + 1 FOR 8) = int8send(hashtextextended('u1', 0))"
    )
    assert erased_user_kept == 0
    async with client_with() as client:
        await assert_breakdowns_as_sent(client, remaining, "alpha")


async def test_a_day_of_tied_values_is_ranked_by_the_index(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    day = FIRST + timedelta(days=1)
    paths = [f"/p{n:05d}" for n in range(3000)]
    step = timedelta(days=1) / len(paths)
    tied = [
        Event("tied", "page_view", path, None, epoch_microseconds(day + n * step), 0, visitor=f"v{n}")
        for n, path in enumerate(reversed(paths))
    ]
    await store(db, tied)
    await keep_past_days(pool, TODAY, 5)
    async with client_with() as client:
        for metric in ("pageviews", "visitors"):
            params = {**custom("tied", day.date(), day.date()), "property": "path", "metrics": metric, "limit": "10"}
            data = await breakdown(client, {**params, "page": "3"})
            assert data["results"] == [{"path": path, metric: 1} for path in paths[20:30]]
            assert data["total_rows"] == 3000
    # N entries read, not every tied value: the page comes from the index in the contract's order.
    await db.execute("ANALYZE report_values")
    plan = json.loads(
        await db.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + queries.REPORTS["top_day_values"], "tied", "path", day, 10, 20
        )
    )
    scan = plan[0]["Plan"]["Plans"][0]
    assert scan["Node Type"] in ("Index Scan", "Index Only Scan")
    assert scan["Index Name"] == "report_values_top_pageviews"
    assert scan["Actual Rows"] == 30


async def test_the_sums_of_kept_days_read_only_those_days_entries(db: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    # Many values a day over four days, of which the breakdown wants two: its sums read those days' entries from the
    # day-ordered index alone, not every kept day's (migrations/0016.report_value_sums.sql).
    events = [
        Event("many", "page_view", f"/p{n % 400}", None, epoch_microseconds(FIRST + n * timedelta(minutes=1)), 0)
        for n in range(4 * 24 * 60)
    ]
    await store(db, events)
    await keep_past_days(pool, TODAY + timedelta(days=1), 5)
    await db.execute("VACUUM ANALYZE report_values")
    days = [FIRST + timedelta(days=1), FIRST + timedelta(days=2)]
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")  # a test's few rows read faster whole; a site's do not
        explained = await db.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + queries.REPORTS["kept_value_sums"], "many", "path", days, []
        )
    plan = json.loads(explained)
    scans = [node for node in walk(plan[0]["Plan"]) if node.get("Relation Name") == "report_values"]
    assert [(node["Node Type"], node.get("Index Name")) for node in scans] == [
        ("Index Only Scan", "report_values_top_pageviews")
    ]
    assert scans[0]["Actual Rows"] == 2 * 400
    assert scans[0].get("Rows Removed by Filter", 0) == 0


def walk(node: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


async def test_the_migration_packs_the_kept_hashes_it_finds(postgres_url: str) -> None:
    """Values kept as bigint[] before migrations/0018.report_value_hashes.sql are carried over, packed, and back by its
    rollback."""
    async with migrated_before(postgres_url, "0018", "packed") as database:
        connection = await asyncpg.connect(database.url)
        try:
            await connection.execute(
                "INSERT INTO report_values (site_id, day, dimension, value, pageviews, events, visitor_count, "
                "user_count, visitors, users) VALUES "
                "('s', '2026-10-20', 'path', '/', 3, 4, 3, 0, '{-9223372036854775808,-5,7}', '{}'), "
                "('s', '2026-10-20', 'path', NULL, 1, 1, 1, 1, '{9223372036854775807}', '{42}')"
            )
            database.apply_the_rest()
            rows = await connection.fetch("SELECT value, visitors, users FROM report_values ORDER BY value NULLS LAST")
            assert [
                (row["value"], sorted(packed_elements(row["visitors"])), list(packed_elements(row["users"])))
                for row in rows
            ] == [("/", [-(2**63), -5, 7], []), (None, [2**63 - 1], [42])]
            database.roll_back_from("0018")
            rows = await connection.fetch("SELECT value, visitors, users FROM report_values ORDER BY value NULLS LAST")
            assert [(row["value"], row["visitors"], row["users"]) for row in rows] == [
                ("/", [-(2**63), -5, 7], []),
                (None, [2**63 - 1], [42]),
            ]
        finally:
            await connection.close()
