"""Databases of their own on a PostgreSQL server: another name in the URL, a clone of the migrated template, a
database at an older release's schema."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from yoyo import get_backend, read_migrations

from analytics.store.migrations import migrations_dir, yoyo_url


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


@dataclass
class PartlyMigrated:
    """A database at an older release's schema, and the step that brings it to this release's."""

    url: str
    _backend: Any
    _migrations: Any

    def apply_the_rest(self) -> None:
        with self._backend.lock():
            self._backend.apply_migrations(self._backend.to_apply(self._migrations))

    def roll_back_from(self, first: str) -> None:
        """Roll back the applied migrations whose ids sort from `first` on, as an operator's rollback would."""
        with self._backend.lock():
            later = self._migrations.filter(lambda migration: migration.id >= first)
            self._backend.rollback_migrations(self._backend.to_rollback(later))


@contextlib.asynccontextmanager
async def migrated_before(postgres_url: str, first_left_out: str, purpose: str) -> AsyncIterator[PartlyMigrated]:
    """A new database with the migrations whose ids sort before `first_left_out` applied, dropped afterwards."""
    name = f"analytics_{purpose}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(postgres_url, name)
        backend = get_backend(yoyo_url(url))
        try:
            migrations = read_migrations(str(migrations_dir()))
            with backend.lock():
                backend.apply_migrations(backend.to_apply(migrations.filter(lambda m: m.id < first_left_out)))
            yield PartlyMigrated(url, backend, migrations)
        finally:
            backend.connection.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
