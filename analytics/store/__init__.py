"""PostgreSQL: connections, migrations, the batch write, and SQL as named queries in `sql/`. asyncpg's errors stop
here (`failures.translated`)."""
