"""Every error the writer can meet has a verdict chosen on purpose: retry (quietly or loudly) or dead-letter."""

from __future__ import annotations

import asyncpg
import pytest

from analytics.store.failures import ErrorKind, classify

TRANSIENT, OPERATOR, POISON = ErrorKind.TRANSIENT, ErrorKind.OPERATOR, ErrorKind.POISON


def server_error(sqlstate: str) -> asyncpg.PostgresError:
    """The exception asyncpg raises for an ErrorResponse carrying `sqlstate`."""
    error: asyncpg.PostgresError = asyncpg.PostgresError.new({"C": sqlstate, "M": "message", "S": "ERROR"})
    return error


SQLSTATES = [
    # Passes by itself: keep the batch, back off, retry.
    ("08000", "connection exception", TRANSIENT),
    ("08006", "connection failure", TRANSIENT),
    ("08001", "client unable to establish connection", TRANSIENT),
    ("08004", "server rejected the connection", TRANSIENT),
    ("25006", "read-only SQL transaction", TRANSIENT),
    ("25P03", "idle-in-transaction session timeout", TRANSIENT),
    ("25P04", "transaction timeout", TRANSIENT),
    ("40001", "serialization failure", TRANSIENT),
    ("40P01", "deadlock detected", TRANSIENT),
    ("40003", "statement completion unknown", TRANSIENT),
    ("53100", "disk full", TRANSIENT),
    ("53200", "out of memory", TRANSIENT),
    ("53300", "too many connections", TRANSIENT),
    ("53400", "configuration limit exceeded", TRANSIENT),
    ("55006", "object in use", TRANSIENT),
    ("55P03", "lock not available", TRANSIENT),
    ("57014", "query canceled (statement_timeout)", TRANSIENT),
    ("57P01", "admin shutdown", TRANSIENT),
    ("57P02", "crash shutdown", TRANSIENT),
    ("57P03", "cannot connect now", TRANSIENT),
    ("57P05", "idle session timeout", TRANSIENT),
    ("72000", "snapshot too old", TRANSIENT),
    # These rows can never be written: bisect, dead-letter.
    ("22000", "data exception", POISON),
    ("22021", "character not in repertoire (NUL)", POISON),
    ("22008", "datetime field overflow", POISON),
    ("22001", "string data right truncation", POISON),
    ("23505", "unique violation", POISON),
    ("23502", "not-null violation", POISON),
    ("23514", "check violation", POISON),
    ("54000", "program limit exceeded (index row too large)", POISON),
    # A person must act: retry, logged as an error, never dead-lettered.
    ("57P04", "database dropped", OPERATOR),
    ("0A000", "feature not supported", OPERATOR),
    ("26000", "prepared statement does not exist (pooler)", OPERATOR),
    ("28000", "invalid authorization specification", OPERATOR),
    ("28P01", "invalid password", OPERATOR),
    ("3D000", "database does not exist", OPERATOR),
    ("3F000", "schema does not exist", OPERATOR),
    ("42501", "insufficient privilege", OPERATOR),
    ("42P01", "undefined table", OPERATOR),
    ("42703", "undefined column", OPERATOR),
    ("42601", "syntax error", OPERATOR),
    ("58030", "I/O error", OPERATOR),
    ("XX000", "internal error", OPERATOR),
    ("XX001", "data corrupted", OPERATOR),
    # Not named anywhere in the table: retried and logged as an error.
    ("25P02", "in failed SQL transaction", OPERATOR),
    ("21000", "cardinality violation", OPERATOR),
    ("P0001", "raise exception (a trigger)", OPERATOR),
    ("ZZ999", "a code this asyncpg does not know", OPERATOR),
]


@pytest.mark.parametrize(("sqlstate", "meaning", "kind"), SQLSTATES, ids=[row[0] for row in SQLSTATES])
def test_server_errors_by_sqlstate(sqlstate: str, meaning: str, kind: ErrorKind) -> None:
    assert classify(server_error(sqlstate)) is kind, meaning


CLIENT_ERRORS: list[tuple[BaseException, ErrorKind]] = [
    (ConnectionRefusedError(111, "refused"), TRANSIENT),
    (ConnectionResetError(104, "reset"), TRANSIENT),
    (OSError(113, "no route to host"), TRANSIENT),
    (TimeoutError(), TRANSIENT),
    (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), TRANSIENT),
    (asyncpg.InterfaceError("cannot perform operation: connection is closed"), TRANSIENT),
    (asyncpg.TargetServerAttributeNotMatched("not a primary"), TRANSIENT),
    (asyncpg.OutdatedSchemaCacheError("type changed"), TRANSIENT),
    (asyncpg.InvalidCachedStatementError("cached plan must not change result type"), TRANSIENT),
    (asyncpg.ClientConfigurationError("invalid sslmode"), OPERATOR),
    (asyncpg.UnsupportedServerFeatureError("no such feature"), OPERATOR),
    (asyncpg.ProtocolError("unexpected message"), TRANSIENT),
    (asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"), TRANSIENT),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), POISON),
    (OverflowError("value out of int64 range"), POISON),
]


@pytest.mark.parametrize(("error", "kind"), CLIENT_ERRORS, ids=[type(error).__name__ for error, _ in CLIENT_ERRORS])
def test_client_side_errors(error: BaseException, kind: ErrorKind) -> None:
    assert classify(error) is kind


@pytest.mark.parametrize(
    "error", [KeyError("x"), TypeError("x"), RuntimeError("x")], ids=lambda error: type(error).__name__
)
def test_what_is_not_a_database_error_is_not_classified(error: Exception) -> None:
    """A bug in the writer is not a database condition: it is raised, not retried for ever."""
    assert classify(error) is None
