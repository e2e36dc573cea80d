"""The rollup tables as they are, against the same tables counted again from `events` by SQL (GROUP BY), and every row
of the tables a site's data lives in."""

from __future__ import annotations

from typing import Any

import asyncpg

_DAY = """("timestamp" AT TIME ZONE 'UTC')::date"""
_PAGE_VIEWS = "FROM events WHERE event_type = 'page_view'"

# Each rollup table: its rows, and what counting the stored events gives, in the same columns.
RECOUNTED = {
    "daily_totals": (
        "SELECT site_id, day, views, users FROM daily_totals",
        f"SELECT site_id, {_DAY}, count(*), count(DISTINCT user_id) {_PAGE_VIEWS} GROUP BY 1, 2",
    ),
    "daily_users": (
        "SELECT site_id, day, user_md5 FROM daily_users",
        f"SELECT DISTINCT site_id, {_DAY}, md5(user_id)::uuid {_PAGE_VIEWS} AND user_id IS NOT NULL",
    ),
    "daily_path_views": (
        "SELECT site_id, day, path_md5, path, views FROM daily_path_views",
        f"SELECT site_id, {_DAY}, md5(path)::uuid, path, count(*) {_PAGE_VIEWS} AND path IS NOT NULL GROUP BY 1, 2, 4",
    ),
    "site_totals": (
        "SELECT site_id, views, users FROM site_totals",
        f"SELECT site_id, count(*), count(DISTINCT user_id) {_PAGE_VIEWS} GROUP BY 1",
    ),
    "site_users": (
        "SELECT site_id, user_md5 FROM site_users",
        f"SELECT DISTINCT site_id, md5(user_id)::uuid {_PAGE_VIEWS} AND user_id IS NOT NULL",
    ),
    "site_path_views": (
        "SELECT site_id, path_md5, path, views FROM site_path_views",
        f"SELECT site_id, md5(path)::uuid, path, count(*) {_PAGE_VIEWS} AND path IS NOT NULL GROUP BY 1, 3",
    ),
    # The report cells (migrations/0012.report_cells.sql): events by their time, visits by their start.
    "report_cells": (
        """SELECT site_id, cell, pageviews, events, visits, bounces, duration_us, visit_pageviews, visitors, users
           FROM report_cells""",
        """SELECT site_id, cell, e.pageviews, e.events, coalesce(v.visits, 0), coalesce(v.bounces, 0),
                  coalesce(v.duration_us, 0), coalesce(v.visit_pageviews, 0), e.visitors, e.users
           FROM (
               SELECT site_id, report_cell("timestamp") AS cell, count(*) FILTER (WHERE event_type = 'page_view')
                          AS pageviews, count(*) AS events,
                      coalesce(array_agg(DISTINCT hashtextextended(visitor, 0) ORDER BY hashtextextended(visitor, 0))
                                   FILTER (WHERE visitor IS NOT NULL), '{}') AS visitors,
                      coalesce(array_agg(DISTINCT hashtextextended(user_id, 0) ORDER BY hashtextextended(user_id, 0))
                                   FILTER (WHERE user_id IS NOT NULL), '{}') AS users
               FROM events GROUP BY 1, 2
           ) e
           LEFT JOIN (
               SELECT site_id, report_cell(started_at) AS cell, count(*) AS visits,
                      count(*) FILTER (WHERE pageviews = 1 AND events = 1) AS bounces,
                      sum((extract(epoch FROM ended_at - started_at) * 1000000)::bigint)::bigint AS duration_us,
                      sum(pageviews)::bigint AS visit_pageviews
               FROM visits GROUP BY 1, 2
           ) v USING (site_id, cell)""",
    ),
    # Not a rollup, but kept from the events the same way: the idempotency key of each stored event, and no other.
    "event_keys": ("SELECT site_id, event_key FROM event_keys", "SELECT site_id, event_key FROM events"),
}
# Every table that holds a site's rows.
SITE_TABLES = ("events", "visits", "site_visit_bounds", *RECOUNTED, "share_links")


def _rows(records: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
    return sorted((tuple(record) for record in records), key=repr)


async def assert_rollups_recount_events(db: asyncpg.Connection) -> None:
    """Every rollup row equals a recount of the stored events, and no row is missing or left over."""
    for table, (kept, recounted) in RECOUNTED.items():
        assert _rows(await db.fetch(kept)) == _rows(await db.fetch(recounted)), table


async def site_rows(db: asyncpg.Connection, site_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the site in every table, with its row version (xmin): an UPDATE that changes nothing shows."""
    return {
        table: _rows(await db.fetch(f"SELECT xmin::text, * FROM {table} WHERE site_id = $1", site_id))
        for table in SITE_TABLES
    }
