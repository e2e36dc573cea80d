"""The project's exceptions. Driver errors (redis-py, asyncpg) are translated into these where they are caught, in
queue/ and store/: nothing above those packages imports a driver's exceptions."""

from __future__ import annotations


class AnalyticsError(Exception):
    """Base of every error this project raises on purpose."""


class QueueError(AnalyticsError):
    """Redis did not do what was asked."""


class QueueUnavailable(QueueError):
    """Redis did not acknowledge (down, frozen, refused): what was pushed is not confirmed queued."""


class NotConfirmed(QueueUnavailable):
    """Redis holds the push but did not confirm it as durable as `ANALYTICS_DURABILITY` asks in time: answered 503
    all the same; its records will be stored, and a client's retry of them is stored once."""


class QueueFull(QueueError):
    """The queue holds more than its cap: the writers are behind; refuse rather than grow without bound."""


class DatabaseError(AnalyticsError):
    """PostgreSQL did not do what was asked. Which subclass says what the caller should do about it."""


class DatabaseUnavailable(DatabaseError):
    """A condition that passes by itself (connection lost, read-only, restart, deadlock, out of resources): retry."""


class DatabaseNeedsOperator(DatabaseError):
    """A condition that lasts until a person acts (schema, permission, configuration, an error nobody classified)."""


class UnwritableRecords(DatabaseError):
    """PostgreSQL refuses these rows themselves (a data, integrity or size error): retrying cannot help."""
