"""PostgreSQL plumbing: the asyncpg pool the service uses, and yoyo migrations (which need a sync driver)."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

import asyncpg
import psycopg
from yoyo import get_backend, read_migrations

logger = logging.getLogger(__name__)

# What the stats read path answers 503 for: the server is unreachable, restarting (57P01 admin shutdown, 57P03
# starting up), out of resources (53xxx), or chose this transaction as a deadlock victim. The writer uses `classify`.
TRANSIENT_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.TransactionRollbackError,
)


class ErrorKind(enum.Enum):
    """What a failed write means, and so what the writer does with its batch."""

    TRANSIENT = "transient"  # passes by itself (restart, failover, load): keep the batch, back off, retry; warn once
    OPERATOR = "operator"  # will not pass until a person acts (schema, permission, config): the same, logged as error
    POISON = "poison"  # these rows can never be written: bisect the batch and dead-letter the rows at fault


# Raised in this process, checked in order (first isinstance match): COPY encodes rows client-side, and a lost
# connection surfaces as OSError, TimeoutError or InterfaceError rather than as a SQLSTATE.
CLIENT_ERROR_KINDS: Final[tuple[tuple[type[BaseException], ErrorKind], ...]] = (
    # A value COPY cannot encode: a lone surrogate in text, a number outside int8.
    (UnicodeEncodeError, ErrorKind.POISON),
    (OverflowError, ErrorKind.POISON),
    # The schema changed under a cached plan (a new connection re-prepares), or a failover left us on a standby.
    (asyncpg.InvalidCachedStatementError, ErrorKind.TRANSIENT),
    (asyncpg.OutdatedSchemaCacheError, ErrorKind.TRANSIENT),
    (asyncpg.TargetServerAttributeNotMatched, ErrorKind.TRANSIENT),
    # A DATABASE_URL option or a server this driver cannot work with.
    (asyncpg.ClientConfigurationError, ErrorKind.OPERATOR),
    (asyncpg.UnsupportedServerFeatureError, ErrorKind.OPERATOR),
    (asyncpg.UnsupportedClientFeatureError, ErrorKind.OPERATOR),
    # The connection closed or broke under the batch; refused, reset, unreachable; a connect or command timeout
    # (TimeoutError is an OSError).
    (asyncpg.InterfaceError, ErrorKind.TRANSIENT),
    (OSError, ErrorKind.TRANSIENT),
    # A protocol error: a driver or proxy problem.
    (asyncpg.InternalClientError, ErrorKind.OPERATOR),
)

# Server errors by SQLSTATE: the full code if listed, else its class (first two characters), else OPERATOR.
# https://www.postgresql.org/docs/current/errcodes-appendix.html
SQLSTATE_KINDS: Final[Mapping[str, ErrorKind]] = MappingProxyType(
    {
        "08": ErrorKind.TRANSIENT,  # connection exception
        "25006": ErrorKind.TRANSIENT,  # read-only transaction: failover, maintenance, default_transaction_read_only
        "25P03": ErrorKind.TRANSIENT,  # idle-in-transaction session timeout
        "25P04": ErrorKind.TRANSIENT,  # transaction timeout
        "40": ErrorKind.TRANSIENT,  # serialization failure, deadlock victim, statement completion unknown
        "53": ErrorKind.TRANSIENT,  # disk full, out of memory, too many connections
        "55006": ErrorKind.TRANSIENT,  # object in use
        "55P03": ErrorKind.TRANSIENT,  # lock not available (lock_timeout)
        "57": ErrorKind.TRANSIENT,  # admin or crash shutdown, cannot connect now, query canceled (statement_timeout)
        "57P04": ErrorKind.OPERATOR,  # database dropped
        "72": ErrorKind.TRANSIENT,  # snapshot too old
        "22": ErrorKind.POISON,  # data exception: a value PostgreSQL refuses
        "23": ErrorKind.POISON,  # integrity constraint violation
        "54": ErrorKind.POISON,  # program limit exceeded: a value too large to index or store
        "0A": ErrorKind.OPERATOR,  # feature not supported
        "26": ErrorKind.OPERATOR,  # prepared statement missing: a pooler in transaction mode
        "28": ErrorKind.OPERATOR,  # authorization: wrong password, no pg_hba.conf entry
        "3D": ErrorKind.OPERATOR,  # database does not exist
        "3F": ErrorKind.OPERATOR,  # schema does not exist
        "42": ErrorKind.OPERATOR,  # undefined table or column, insufficient privilege
        "58": ErrorKind.OPERATOR,  # I/O error, missing file
        "XX": ErrorKind.OPERATOR,  # internal error, data corrupted
    }
)


def classify(error: BaseException) -> ErrorKind | None:
    """What a failure of a database write means; None for what is not a database error at all (a bug: let it raise).

    A PostgreSQL error this table does not name is OPERATOR: retried and logged as an error, because neither
    killing the process nor dead-lettering data is right for a condition of the server.
    """
    for kind, verdict in CLIENT_ERROR_KINDS:
        if isinstance(error, kind):
            return verdict
    if isinstance(error, asyncpg.PostgresError):
        sqlstate: str = getattr(error, "sqlstate", None) or ""
        return SQLSTATE_KINDS.get(sqlstate) or SQLSTATE_KINDS.get(sqlstate[:2], ErrorKind.OPERATOR)
    return None


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
