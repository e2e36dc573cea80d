"""What an asyncpg error means, decided in one place, and its translation into the project's errors.

Every error the writer can meet is classified on purpose: transient (passes by itself: retry), operator (lasts until a
person acts: retry, and say so loudly) or poison (these rows can never be written: dead-letter them).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Final

import asyncpg

from analytics.errors import DatabaseNeedsOperator, DatabaseUnavailable, UnwritableRecords
from analytics.observability.logs import describe_error


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
    # The driver's own state errors ("cannot switch to state 15; another operation is in progress", an unexpected
    # message): seen when the server dies mid-batch. The connection is dropped after any failure and a new one is
    # clean, so they pass by themselves (tests/faults: PostgreSQL stopped under load).
    (asyncpg.InternalClientError, ErrorKind.TRANSIENT),
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


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise the project's error for what asyncpg raises: nothing above store/ sees the driver's exceptions.

    A failure that is not a database error at all (a bug) passes through unchanged.
    """
    try:
        yield
    except Exception as error:
        kind = classify(error)
        if kind is None:
            raise
        raise TRANSLATIONS[kind](describe_error(error)) from error


TRANSLATIONS: Final = MappingProxyType(
    {
        ErrorKind.TRANSIENT: DatabaseUnavailable,
        ErrorKind.OPERATOR: DatabaseNeedsOperator,
        ErrorKind.POISON: UnwritableRecords,
    }
)
