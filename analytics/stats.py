"""The reporting queries, and the validation of their parameters."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Final

import asyncpg
import msgspec

from analytics.events import SITE_ID_MAX, FieldError, InvalidInput

TOP_PATHS: Final = 3
_DATE_SHAPE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATE_MESSAGE: Final = "date must be a real calendar date in YYYY-MM-DD format"

# $2 is the UTC start of the day, or NULL for all time; the day's end is computed by PostgreSQL, which (unlike
# Python) can represent the day after 9999-12-31. The range stays sargable on (site_id, event_type, timestamp).
_RANGE: Final = """site_id = $1 AND event_type = 'page_view'
  AND "timestamp" >= coalesce($2::timestamptz, '-infinity')
  AND "timestamp" < coalesce($2::timestamptz + interval '1 day', 'infinity')"""

TOTALS_SQL: Final = f"""
SELECT count(*) AS total_views, count(DISTINCT user_id) AS unique_users
FROM events
WHERE {_RANGE}
"""

TOP_PATHS_SQL: Final = f"""
SELECT path, count(*) AS views
FROM events
WHERE {_RANGE} AND path IS NOT NULL
GROUP BY path
ORDER BY views DESC, path COLLATE "C"
LIMIT {TOP_PATHS}
"""


class StatsQuery(msgspec.Struct, frozen=True):
    site_id: str
    day: date | None


class PathViews(msgspec.Struct, frozen=True):
    path: str
    views: int


class SiteStats(msgspec.Struct, frozen=True):
    site_id: str
    date: str
    total_views: int
    unique_users: int
    top_paths: list[PathViews]


def parse_stats_query(site_id: str | None, day: str | None) -> StatsQuery:
    """Validate the query string; raise `InvalidInput` with every problem at once."""
    problems: list[FieldError] = []
    if not site_id:
        problems.append(FieldError("query.site_id", "site_id is required"))
    elif len(site_id) > SITE_ID_MAX:
        problems.append(FieldError("query.site_id", f"site_id must be at most {SITE_ID_MAX} characters"))
    elif "\x00" in site_id:
        problems.append(FieldError("query.site_id", "site_id must not contain NUL characters"))
    parsed_day: date | None = None
    if day is not None:
        try:
            if not _DATE_SHAPE.fullmatch(day):
                raise ValueError(day)
            parsed_day = date.fromisoformat(day)
        except ValueError:
            problems.append(FieldError("query.date", DATE_MESSAGE))
    if problems:
        raise InvalidInput(problems)
    assert site_id is not None
    return StatsQuery(site_id=site_id, day=parsed_day)


async def site_stats(pool: asyncpg.Pool, query: StatsQuery) -> SiteStats:
    start = None if query.day is None else datetime(query.day.year, query.day.month, query.day.day, tzinfo=UTC)
    async with pool.acquire() as connection:
        totals = await connection.fetchrow(TOTALS_SQL, query.site_id, start)
        top = await connection.fetch(TOP_PATHS_SQL, query.site_id, start)
    assert totals is not None
    return SiteStats(
        site_id=query.site_id,
        date="all-time" if query.day is None else query.day.isoformat(),
        total_views=totals["total_views"],
        unique_users=totals["unique_users"],
        top_paths=[PathViews(path=row["path"], views=row["views"]) for row in top],
    )
