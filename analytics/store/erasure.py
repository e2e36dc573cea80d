"""Erasure: a user's events on a site, or a whole site's data, removed while ingestion and the writers keep running,
with the rollups and visits corrected exactly in the same transaction (store/sql/erasure.sql says how it keeps out
of the writers' way). Idempotent: a second run finds nothing to remove and changes nothing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from analytics.errors import DatabaseUnavailable
from analytics.store import queries
from analytics.store.failures import translated

# The statements of an erasure may run long (a site's every row); writers wait meanwhile, and the queue grows.
ERASE_TIMEOUT_S: Final = 3600.0
# The digest that stands for a user in the audit log: enough hex digits that two users of a site never share one.
USER_DIGEST_HEX_DIGITS: Final = 16


@dataclass(frozen=True, slots=True)
class Erasure:
    """What one erasure removed. `user_digest` is None for a whole site."""

    site_id: str
    user_digest: str | None
    events: int
    page_views: int
    visits: int
    share_links: int = 0

    def summary(self) -> str:
        """One line, for the audit log and the operator: what went, never the user id."""
        if self.user_digest is None:
            subject, links = f"site {self.site_id!r}", f", {self.share_links} share link(s)"
        else:
            subject, links = f"user sha256:{self.user_digest} of site {self.site_id!r}", ""
        return (
            f"erased {subject}: {self.events} event(s) ({self.page_views} page view(s)), "
            f"{self.visits} visit(s){links} removed"
        )


def user_digest(site_id: str, user_id: str) -> str:
    """What the audit log says instead of the user id: the log outlives the erasure and travels to other systems, so
    it must not hold the id that was erased. Whoever already knows the id (the person who asked for the erasure, the
    operator's ticket) can recompute the digest and find the line. With the site in the hash, one user's erasures on
    two sites cannot be joined."""
    digest = hashlib.sha256(f"{site_id}\x00{user_id}".encode()).hexdigest()
    return digest[:USER_DIGEST_HEX_DIGITS]


async def _lock_out_writers(connection: PoolConnectionProxy) -> None:
    """Wait for the writers' batches in flight, and hold back the next ones, until the transaction ends."""
    try:
        await connection.execute(queries.ERASURE["lock_out_writers"])
    except asyncpg.LockNotAvailableError:
        raise DatabaseUnavailable(
            "the writers (or another erasure) held the events table for more than 10 s: nothing was erased, retry"
        ) from None


async def _forget_distincts(connection: PoolConnectionProxy, site_id: str) -> None:
    """The site's kept distinct counts go, and reports keep none until the transaction ends."""
    await connection.execute(queries.ERASURE["lock_out_distinct_keepers"], site_id)
    await connection.execute(queries.ERASURE["forget_distincts"], site_id)


async def erase_user(pool: asyncpg.Pool, site_id: str, user_id: str) -> Erasure:
    """Remove every event of `user_id` on `site_id`, take them out of the rollups, and rebuild the visits they were
    in from the visitor's remaining events, as the writer's merge builds them."""
    with translated():
        async with pool.acquire() as connection:
            # The writer's temporary tables: the removed events go where the writer keeps a batch's inserted ones,
            # so that its own visit rebuild reads them.
            await connection.execute(queries.WRITER["create_staging"])
            async with connection.transaction():
                await _lock_out_writers(connection)
                await connection.execute(
                    queries.ERASURE["delete_user_events"], site_id, user_id, timeout=ERASE_TIMEOUT_S
                )
                visits_before: int = await connection.fetchval(queries.ERASURE["visits_of_removed"])
                await connection.execute(queries.ERASURE["uncount_user_events"], timeout=ERASE_TIMEOUT_S)
                await connection.execute(queries.WRITER["rebuild_visits"], timeout=ERASE_TIMEOUT_S)
                await connection.execute(queries.ERASURE["uncount_cells"], timeout=ERASE_TIMEOUT_S)
                await connection.execute(
                    queries.ERASURE["forget_user_in_cells"], site_id, user_id, timeout=ERASE_TIMEOUT_S
                )
                await _forget_distincts(connection, site_id)
                visits_after: int = await connection.fetchval(queries.ERASURE["visits_of_removed"])
                removed = await connection.fetchrow(queries.ERASURE["removed_counts"])
    assert removed is not None, "an aggregate returns one row"
    return Erasure(
        site_id=site_id,
        user_digest=user_digest(site_id, user_id),
        events=removed["events"],
        page_views=removed["page_views"],
        visits=visits_before - visits_after,
    )


async def erase_site(pool: asyncpg.Pool, site_id: str) -> Erasure:
    """Remove every row of `site_id`: events, rollups, visits and share links."""
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            await _lock_out_writers(connection)
            removed = await connection.fetchrow(queries.ERASURE["erase_site"], site_id, timeout=ERASE_TIMEOUT_S)
            await _forget_distincts(connection, site_id)
    assert removed is not None, "a SELECT without FROM returns one row"
    return Erasure(
        site_id=site_id,
        user_digest=None,
        events=removed["events"],
        page_views=removed["page_views"],
        visits=removed["visits"],
        share_links=removed["share_links"],
    )
