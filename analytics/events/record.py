"""The event as it travels: one named type from the decoded body, through the queue, to the COPY row."""

from __future__ import annotations

import hashlib
import time
from typing import Final

import msgspec


class Event(msgspec.Struct, array_like=True, gc=False):
    """One event. Encoded as a msgpack array in this field order: the compact record the queue has always held, so
    records queued by earlier versions (plain 6-element arrays) decode as Events.

    `ts_us` is UTC microseconds since 1970; `accepted_ms` is when the api answered 202 (ms since 1970, for the
    writer's lag metric), set just before the push. Not frozen: the api stamps `accepted_ms` in place instead of
    copying every event of a batch.
    """

    site_id: str
    event_type: str
    path: str | None
    user_id: str | None
    ts_us: int
    accepted_ms: int = 0


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Event).decode


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode_event(event: Event) -> bytes:
    return _encode(event)


def decode_queued(data: bytes) -> Event:
    """Raise `msgspec.DecodeError` (or `ValidationError`) for bytes that are not a record.

    Records queued before empty strings meant absent may still hold `""`: they are read as null, like new ones.
    """
    event = _decode(data)
    if event.path == "":
        event.path = None
    if event.user_id == "":
        event.user_id = None
    return event


KEY_NULL: Final = "n"


def event_key(event: Event) -> str:
    """The idempotency key, exactly as the SQL function `event_key` (migrations/0003.event_key.sql) computes it.

    Computed here so PostgreSQL, the writer's bottleneck, does not (3.7 us a row there). Lengths are in characters,
    as PostgreSQL's `length()` counts them; NULL is `n`, with no value after it (`concat_ws` skips NULLs). Returned as
    the hex digits a `uuid` column takes: asyncpg parses those in C, where building `uuid.UUID`s cost more than md5.
    """
    site_id, event_type, user_id, path = event.site_id, event.event_type, event.user_id, event.path
    parts = [str(len(site_id)), site_id, str(len(event_type)), event_type]
    parts += (KEY_NULL,) if user_id is None else (str(len(user_id)), user_id)
    parts += (KEY_NULL,) if path is None else (str(len(path)), path)
    parts.append(str(event.ts_us))
    return hashlib.md5(":".join(parts).encode(), usedforsecurity=False).hexdigest()
