"""Databases of their own on a PostgreSQL server: another name in the URL, a clone of the migrated template."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(url: str, name: str) -> str:
    """The same server, another database: works for host:port URLs and socket-directory URLs alike."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def cloned_database(postgres_url: str, template_database: str, purpose: str = "test") -> AsyncIterator[str]:
    """A database of its own, cloned from the migrated template in milliseconds, dropped afterwards."""
    name = f"analytics_{purpose}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        yield with_database(postgres_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
