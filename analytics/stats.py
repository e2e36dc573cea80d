"""The reporting queries, and the validation of their parameters."""

from __future__ import annotations

import re
from datetime import date
from typing import Final

import asyncpg
import msgspec

from analytics.events import SITE_ID_MAX, FieldError, InvalidInput

TOP_PATHS: Final = 3
_DATE_SHAPE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATE_MESSAGE: Final = "date must be a real calendar date in YYYY-MM-DD format"

# Stats read only the rollups the writer maintains (migrations/0002.rollups.sql): primary-key lookups, plus a sort
# of one site's (or one day's) distinct paths. Nothing here grows with the number of events.
DAY_TOTALS_SQL: Final = "SELECT views, users FROM daily_totals WHERE site_id = $1 AND day = $2"
DAY_TOP_PATHS_SQL: Final = f"""
SELECT path, views FROM daily_path_views
WHERE site_id = $1 AND day = $2
ORDER BY views DESC, path
LIMIT {TOP_PATHS}
"""
ALL_TIME_TOTALS_SQL: Final = "SELECT views, users FROM site_totals WHERE site_id = $1"
ALL_TIME_TOP_PATHS_SQL: Final = f"""
SELECT path, views FROM site_path_views
WHERE site_id = $1
ORDER BY views DESC, path
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


async def site_stats(pool: asyncpg.Pool, query: StatsQuery) -> SiteStats | None:
    """The site's stats for the day (or all time); None when it has no page views there."""
    async with pool.acquire() as connection:
        if query.day is None:
            totals = await connection.fetchrow(ALL_TIME_TOTALS_SQL, query.site_id)
            top = await connection.fetch(ALL_TIME_TOP_PATHS_SQL, query.site_id) if totals else []
        else:
            totals = await connection.fetchrow(DAY_TOTALS_SQL, query.site_id, query.day)
            top = await connection.fetch(DAY_TOP_PATHS_SQL, query.site_id, query.day) if totals else []
    if totals is None or totals["views"] == 0:
        return None
    return SiteStats(
        site_id=query.site_id,
        date="all-time" if query.day is None else query.day.isoformat(),
        total_views=totals["views"],
        unique_users=totals["users"],
        top_paths=[PathViews(path=row["path"], views=row["views"]) for row in top],
    )
