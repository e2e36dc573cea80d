"""Share links as stored: created, listed, revoked, and resolved to the one site a live link may read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from analytics.store import queries
from analytics.store.failures import translated


@dataclass(frozen=True, slots=True)
class ShareLink:
    id: int
    site_id: str
    created_at: datetime
    revoked_at: datetime | None


def _link(row: asyncpg.Record) -> ShareLink:
    return ShareLink(row["id"], row["site_id"], row["created_at"], row["revoked_at"])


async def create_share(pool: asyncpg.Pool, site_id: str, token_digest: bytes) -> ShareLink:
    with translated():
        row = await pool.fetchrow(queries.SHARES["create_share"], site_id, token_digest)
    assert row is not None, "INSERT ... RETURNING returns its row"
    return _link(row)


async def list_shares(pool: asyncpg.Pool) -> list[ShareLink]:
    with translated():
        return [_link(row) for row in await pool.fetch(queries.SHARES["list_shares"])]


async def revoke_share(pool: asyncpg.Pool, share_id: int) -> ShareLink | None:
    """The link as revoked (at its first revocation), or None when there is no such link."""
    with translated():
        row = await pool.fetchrow(queries.SHARES["revoke_share"], share_id)
    return None if row is None else _link(row)


async def shared_site(pool: asyncpg.Pool, token_digest: bytes) -> str | None:
    with translated():
        site: str | None = await pool.fetchval(queries.SHARES["shared_site"], token_digest)
    return site
