"""Which sites there are to report on, for the dashboard's site picker."""

from __future__ import annotations

import asyncpg

from analytics.store import queries
from analytics.store.failures import translated


async def sites_with_data(pool: asyncpg.Pool) -> list[str]:
    """Every site with at least one stored page view, in code-point order."""
    with translated():
        rows = await pool.fetch(queries.SITES["sites_with_data"])
    return [row["site_id"] for row in rows]
