"""PostgreSQL plumbing: the asyncpg pool the service uses, and yoyo migrations (which need a sync driver)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import asyncpg
import psycopg
from yoyo import get_backend, read_migrations

logger = logging.getLogger(__name__)

# "Try again later", as opposed to "this data can never be written": the server is unreachable, restarting
# (57P01 admin shutdown, 57P03 starting up), out of resources (53xxx), or chose this transaction as a deadlock victim.
TRANSIENT_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.TransactionRollbackError,
)

_PACKAGED_MIGRATIONS = Path(__file__).with_name("migrations")
_SOURCE_MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def migrations_dir() -> Path:
    """Wheels carry the migrations inside the package; a source checkout keeps them at the top level."""
    return _PACKAGED_MIGRATIONS if _PACKAGED_MIGRATIONS.is_dir() else _SOURCE_MIGRATIONS


def yoyo_url(database_url: str) -> str:
    """yoyo 9 needs a synchronous driver: psycopg 3, named in the URL scheme."""
    scheme, separator, rest = database_url.partition("://")
    if not separator or scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {database_url!r}")
    return f"postgresql+psycopg://{rest}"


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations under yoyo's lock (safe when several processes start at once).

    An unreachable server raises `ConnectionError`, which the CLI reports in one line like any other OSError.
    """
    try:
        backend = get_backend(yoyo_url(database_url))
    except psycopg.OperationalError as error:
        raise ConnectionError(f"cannot reach PostgreSQL to migrate: {' '.join(str(error).split())}") from None
    try:
        migrations = read_migrations(str(migrations_dir()))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        applied = [migration.id for migration in pending]
    finally:
        backend.connection.close()
    if applied:
        logger.info("applied migrations: %s", ", ".join(applied))
    return applied


async def ping_database(pool: asyncpg.Pool) -> None:
    await pool.fetchval("SELECT 1")


async def create_pool(database_url: str, size: int) -> asyncpg.Pool:
    """Connections open lazily (min_size=0): the api must start, and ingest, while PostgreSQL is down."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url, min_size=0, max_size=size, command_timeout=30, max_inactive_connection_lifetime=60
    )
    return pool
