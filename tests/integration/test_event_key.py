"""The idempotency key: equal exactly when the natural key is equal, NULLs equal to each other only."""

from __future__ import annotations

import asyncpg
import pytest

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
