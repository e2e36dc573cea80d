"""Week sums of kept values (migrations/0017.report_value_weeks.sql): the keeper sums each ISO week whose seven days
are kept, with the exact unions of the days' distinct visitors and users; breakdowns over ranges of whole weeks and
parts of weeks, in any zone and by any event metric, equal a brute force over the events sent; a week is read while
its days hold, not once a late event lands in one, and is summed again when that day is kept again; an erasure
forgets the weeks."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.stats.keeper import keep_past_days
from analytics.store.erasure import erase_user
from tests.helpers.servers import Client
from tests.integration.test_kept_values import (
    PATHS,
    SOURCES,
    assert_breakdowns_as_sent,
    bounds,
    breakdown,
    brute_breakdown,
    custom,
)
from tests.integration.test_report_distincts import store

TODAY = date(2026, 10, 28)  # a Wednesday: the weeks of October 5, 12 and 19 are whole and past
FIRST_DAY = date(2026, 10, 4)  # a Sunday: the week before is not whole
WEEKS = [datetime.combine(date(2026, 10, day), time(), UTC) for day in (5, 12, 19)]
KEEP_DAYS = 30


def days_of_visits(site: str) -> list[Event]:
    """A dozen visits a day from October 4 to 27, by visitors who come back on other days (a week's distinct count
    is less than its days' sum); users on some; the landing event carries the source."""
    events = []
    day_count = (TODAY - FIRST_DAY).days
    for number in range(day_count * 12):
        day = datetime.combine(FIRST_DAY + timedelta(days=number // 12), time(), UTC)
        user = f"u{number % 5}" if number % 7 == 3 else None
        visitor = user or f"v{number % 37}"
        start = day + timedelta(minutes=113 * (number % 12) + number % 9)
        for step in range(1 + number % 3):
            events.append(
                Event(
                    site,
                    "page_view" if step < 2 else "signup",
                    PATHS[(number + step) % len(PATHS)],
                    user,
                    epoch_microseconds(start + timedelta(minutes=7 * step)),
                    0,
                    visitor=visitor,
                    source=SOURCES[number % 3] if step == 0 else None,
                )
            )
    return events


async def test_whole_weeks_are_summed_with_the_unions_of_their_days(db: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    events = days_of_visits("weekly")
    await store(db, events)
    assert (await keep_past_days(pool, TODAY, KEEP_DAYS)).weeks == 3
    assert [row["week"] for row in await db.fetch("SELECT week FROM report_value_weeks_kept ORDER BY week")] == WEEKS
    for week, prop in itertools.product(WEEKS, ("path", "source")):
        names = ("pageviews", "events", "visitors", "users")
        expected = {
            row[prop]: tuple(row[name] for name in names)
            for row in brute_breakdown(events, "weekly", week, week + timedelta(days=7), prop, names)
        }
        rows = await db.fetch(
            "SELECT value, pageviews, events, visitor_count, user_count FROM report_value_weeks "
            "WHERE site_id = 'weekly' AND week = $1 AND dimension = $2",
            week,
            prop,
        )
        assert {row["value"]: tuple(row)[1:] for row in rows} == expected
    assert await db.fetchval("SELECT count(DISTINCT dimension) FROM report_value_weeks") == 17
    # Visitors come back within a week: a union, not a sum.
    assert await db.fetchval(
        "SELECT bool_and(w.visitor_count < d.days_sum) FROM report_value_weeks w "
        "JOIN (SELECT dimension, value, sum(visitor_count) AS days_sum FROM report_values "
        "      WHERE day >= $1 AND day < $1::timestamptz + interval '7 days' GROUP BY 1, 2) d "
        "  ON d.dimension = w.dimension AND d.value IS NOT DISTINCT FROM w.value "
        "WHERE w.week = $1 AND w.dimension = 'event_type' AND w.value = 'page_view'",
        WEEKS[0],
    )


# Whole weeks with days at either end, in zones whose days are parts of UTC days, and today (raw).
RANGES = (
    (date(2026, 10, 4), date(2026, 10, 27), "UTC"),
    (date(2026, 10, 8), date(2026, 10, 26), "Asia/Kolkata"),
    (date(2026, 10, 12), date(2026, 10, 28), "Pacific/Chatham"),
    (date(2026, 10, 12), date(2026, 10, 18), "UTC"),
)


async def kept_weeks(db: asyncpg.Connection, pool: asyncpg.Pool) -> list[Event]:
    """The visits of October stored, and their days and weeks kept."""
    events = days_of_visits("weekly")
    await store(db, events)
    await keep_past_days(pool, TODAY, KEEP_DAYS)
    return events


async def test_breakdowns_over_kept_weeks_equal_a_brute_force(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    events = await kept_weeks(db, pool)
    async with client_with() as client:
        await assert_breakdowns_as_sent(client, events, "weekly", RANGES)


async def test_a_week_is_read_while_its_days_hold_and_summed_again_after_a_late_event(
    client_with: Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    events = await kept_weeks(db, pool)
    first, last = date(2026, 10, 5), date(2026, 10, 25)
    params = {**custom("weekly", first, last), "property": "path", "metrics": "pageviews"}
    expected = brute_breakdown(events, "weekly", *bounds(first, last, "UTC"), "path", ("pageviews",))
    # Changed behind the reports' back, a week's sums are what the range answers: the week is read, not its days.
    await db.execute(
        "UPDATE report_value_weeks SET pageviews = pageviews + 1000 WHERE value = '/B' AND dimension = 'path' "
        "AND week = $1",
        WEEKS[1],
    )
    async with client_with() as client:
        shown = {row["path"]: row["pageviews"] for row in (await breakdown(client, params))["results"]}
        assert shown["/B"] == {row["path"]: row["pageviews"] for row in expected}["/B"] + 1000
        # A late event on a day of that week: the day no longer holds, so neither does its week.
        late_at = datetime(2026, 10, 14, 12, 5, tzinfo=UTC)
        late = Event("weekly", "page_view", "/late", None, epoch_microseconds(late_at), 0, visitor="late")
        await store(db, [late])
        events.append(late)
        expected = brute_breakdown(events, "weekly", *bounds(first, last, "UTC"), "path", ("pageviews",))
        assert (await breakdown(client, params))["results"] == expected
        # Keeping the day again forgets its week, which is summed again from the days as they are now.
        kept = await keep_past_days(pool, TODAY, KEEP_DAYS)
        assert (kept.values, kept.weeks) == (1, 1)
        assert (await breakdown(client, params))["results"] == expected
        assert (
            await db.fetchval(
                "SELECT pageviews FROM report_value_weeks WHERE value = '/late' AND dimension = 'path' AND week = $1",
                WEEKS[1],
            )
            == 1
        )


async def test_an_erasure_forgets_the_weeks(db: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    await kept_weeks(db, pool)
    assert await db.fetchval("SELECT count(*) FROM report_value_weeks_kept") == 3
    assert (await erase_user(pool, "weekly", "u3")).events > 0
    assert await db.fetchval("SELECT count(*) FROM report_value_weeks") == 0
    assert await db.fetchval("SELECT count(*) FROM report_value_weeks_kept") == 0
    assert (await keep_past_days(pool, TODAY, KEEP_DAYS)).weeks == 3
