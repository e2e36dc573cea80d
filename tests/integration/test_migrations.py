"""Every migration's rollback file undoes it: all of them roll back, and all apply again on the emptied database."""

from __future__ import annotations

import asyncpg
from yoyo import get_backend, read_migrations

from analytics.store.migrations import migrate, migrations_dir, yoyo_url
from tests.helpers.databases import cloned_database

TABLES_SQL = "SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
INDEXES_SQL = "SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'"


async def test_every_migration_rolls_back_and_applies_again(postgres_url: str, template_database: str) -> None:
    async with cloned_database(postgres_url, template_database, "rollback") as url:
        connection = await asyncpg.connect(url)
        try:
            migrated = (await connection.fetchval(TABLES_SQL), await connection.fetchval(INDEXES_SQL))
            assert "daily_path_views_top" in migrated[1]
            assert "event_keys_pkey" in migrated[1]

            backend = get_backend(yoyo_url(url))
            try:
                migrations = read_migrations(str(migrations_dir()))
                with backend.lock():
                    backend.rollback_migrations(backend.to_rollback(migrations))
            finally:
                backend.connection.close()
            tables = await connection.fetchval(TABLES_SQL)
            assert not [table for table in tables or [] if not table.startswith("_yoyo") and table != "yoyo_lock"]

            assert len(migrate(url)) == len(migrations)
            assert (await connection.fetchval(TABLES_SQL), await connection.fetchval(INDEXES_SQL)) == migrated
        finally:
            await connection.close()
