"""The daily salts of cookieless visitor ids, kept in Redis so every api process hashes with the same one.

The first process to need a day's salt creates it (`SET NX`, random bytes) with an expiry 48 hours after that day
began, so a salt exists from its UTC midnight until it has been out of use for a day, then Redis deletes it. Each
process keeps only the current day's salt in memory.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final, cast

from analytics.queue.client import translated
from analytics.queue.connection import Redis
from analytics.queue.keys import QueueKeys

SALT_BYTES: Final = 32
SALT_LIFETIME: Final = timedelta(hours=48)
DAY_S: Final = 86_400


class DailySalts:
    def __init__(self, client: Redis, keys: QueueKeys, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._day_index = -1
        self._salt = b""

    def cached(self) -> bytes | None:
        """Today's salt if this process has it: the hot path's check, with no await."""
        return self._salt if int(self._clock() // DAY_S) == self._day_index else None

    @translated
    async def today(self) -> bytes:
        """Today's salt, created in Redis by whichever process asks first. Raises `QueueUnavailable`."""
        day_index = int(self._clock() // DAY_S)
        if day_index != self._day_index:
            day = datetime.fromtimestamp(day_index * DAY_S, UTC)
            expires_at = int((day + SALT_LIFETIME).timestamp())
            fresh = secrets.token_bytes(SALT_BYTES)
            # One round trip: set if absent (with the expiry), and get whatever is there.
            kept = await cast(
                "Awaitable[bytes | None]",
                self._client.set(self._keys.salt(day.date().isoformat()), fresh, nx=True, get=True, exat=expires_at),
            )
            self._salt, self._day_index = kept or fresh, day_index
        return self._salt
