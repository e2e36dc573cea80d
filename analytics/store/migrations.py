"""yoyo migrations: applied by `analytics migrate` and before `serve`, with a synchronous driver (yoyo needs one)."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations

logger = logging.getLogger(__name__)

_PACKAGED_MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
_SOURCE_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


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
