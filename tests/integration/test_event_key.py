"""The idempotency key: equal exactly when the natural key is equal, NULLs equal to each other only."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.events.record import Event, event_key

KEY_SQL = "SELECT event_key($1, $2, $3, $4, $5) = event_key($6, $7, $8, $9, $10)"


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        (("s", "page_view", "u", "/p", 1), ("s", "page_view", "u", "/p", 1), True),
        (("s", "page_view", None, None, 1), ("s", "page_view", None, None, 1), True),
        (("s", "page_view", None, "/p", 1), ("s", "page_view", "", "/p", 1), False),
        (("s", "page_view", "u", None, 1), ("s", "page_view", "u", "", 1), False),
        (("s", "page_view", "u", "/p", 1), ("s", "click", "u", "/p", 1), False),
        (("s", "page_view", "u", "/p", 1), ("s", "page_view", "u", "/p", 2), False),
        (("s:1", "x", "u", "/p", 1), ("s", "1:x", "u", "/p", 1), False),
        (("a", "b", "u:2:x", None, 1), ("a", "b", "u", "x", 1), False),
        (("a", "b", None, "n", 1), ("a", "b", "n", None, 1), False),
    ],
)
async def test_keys_collide_only_for_the_same_event(
    db: asyncpg.Connection, first: tuple[object, ...], second: tuple[object, ...], same: bool
) -> None:
    assert await db.fetchval(KEY_SQL, *first, *second) is same


# Text PostgreSQL can store: no NUL, no lone surrogates (which valid JSON cannot carry either).
stored_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    site=stored_text.filter(bool),
    kind=stored_text.filter(bool),
    user=st.none() | stored_text,
    path=st.none() | stored_text,
    ts_us=st.integers(-(2**62), 2**62),
)
async def test_the_writer_computes_the_key_the_migration_computes(
    db: asyncpg.Connection, site: str, kind: str, user: str | None, path: str | None, ts_us: int
) -> None:
    """The writer keys new events in Python; the migration keyed old ones in SQL: they must agree, or re-delivery
    of an old event would store it twice."""
    in_sql = await db.fetchval("SELECT event_key($1, $2, $3, $4, $5)", site, kind, user, path, ts_us)
    assert uuid.UUID(event_key(Event(site, kind, path, user, ts_us))) == in_sql
