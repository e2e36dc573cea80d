"""v1 stats, read from the rollups the writer keeps: primary-key lookups and the first entries of an index, so the
cost does not grow with the number of events."""

from __future__ import annotations

import asyncpg
import msgspec

from analytics.stats.query import StatsQuery
from analytics.store import queries
from analytics.store.failures import translated


class PathViews(msgspec.Struct, frozen=True):
    path: str
    views: int


class SiteStats(msgspec.Struct, frozen=True):
    site_id: str
    date: str
    total_views: int
    unique_users: int
    top_paths: list[PathViews]


async def site_stats(pool: asyncpg.Pool, query: StatsQuery) -> SiteStats | None:
    """The site's stats for the day (or all time); None when it has no page views there."""
    with translated():
        async with pool.acquire() as connection:
            if query.day is None:
                totals = await connection.fetchrow(queries.STATS["all_time_totals"], query.site_id)
                top = await connection.fetch(queries.STATS["all_time_top_paths"], query.site_id) if totals else []
            else:
                totals = await connection.fetchrow(queries.STATS["day_totals"], query.site_id, query.day)
                top = await connection.fetch(queries.STATS["day_top_paths"], query.site_id, query.day) if totals else []
    if totals is None or totals["views"] == 0:
        return None
    return SiteStats(
        site_id=query.site_id,
        date="all-time" if query.day is None else query.day.isoformat(),
        total_views=totals["views"],
        unique_users=totals["users"],
        top_paths=[PathViews(path=row["path"], views=row["views"]) for row in top],
    )
