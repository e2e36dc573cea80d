"""The event as it travels: one named type from the decoded body, through the queue, to the COPY row."""

from __future__ import annotations

import hashlib
import time
from typing import Final

import msgspec


class Event(msgspec.Struct, array_like=True, gc=False):
    """One event. Encoded as a msgpack array in this field order: the compact record the queue has always held, so
    records queued by earlier versions (plain 6-element arrays) decode as Events. Fields after `accepted_ms` came
    with ingest v2 and are appended only: a record that lacks them (queued by v1) reads them as their defaults.

    `ts_us` is UTC microseconds since 1970, after clock-skew correction; `client_ts_us` is the client's own
    timestamp when the correction moved it (identity uses it). `accepted_ms` is when the api answered 202 (ms since
    1970, for the writer's lag metric), set just before the push. `props` is the custom properties as JSON text, as
    the jsonb column takes it. The client's IP address is never part of an Event. Not frozen: the api stamps
    `accepted_ms` in place instead of copying every event of a batch.
    """

    site_id: str
    event_type: str
    path: str | None
    user_id: str | None
    ts_us: int
    accepted_ms: int = 0
    client_ts_us: int | None = None
    event_id: str | None = None
    visitor: str | None = None
    referrer: str | None = None
    source: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    browser: str | None = None
    browser_version: str | None = None
    os: str | None = None
    os_version: str | None = None
    device: str | None = None
    country: str | None = None
    props: str | None = None


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
    """The idempotency key, returned as the hex digits a `uuid` column takes (asyncpg parses those in C, where
    building `uuid.UUID`s cost more than md5). Computed here so PostgreSQL, the writer's bottleneck, does not.

    With an `event_id`, the key is `(site_id, event_id)` alone: a re-send is one event whatever else changed.
    Without one, the natural key exactly as the SQL function `event_key` (migrations/0003.event_key.sql) computes
    it: lengths in characters, as PostgreSQL's `length()` counts them; NULL is `n`, with no value after it
    (`concat_ws` skips NULLs); the timestamp is the client's own, so skew correction cannot split a retry. An
    anonymous event (no user_id) adds its cookieless visitor, so two visitors viewing a page in the same
    microsecond stay two events while one client's retry stays one. The three shapes cannot collide: the id form
    starts with `e`, the others with a digit, and `v` marks the visitor where a user_id's length would stand.
    """
    site_id = event.site_id
    if event.event_id is not None:
        text = f"e:{len(site_id)}:{site_id}:{event.event_id}"
    else:
        event_type, user_id, path, visitor = event.event_type, event.user_id, event.path, event.visitor
        parts = [str(len(site_id)), site_id, str(len(event_type)), event_type]
        if user_id is not None:
            parts += (str(len(user_id)), user_id)
        elif visitor is not None:
            parts.append(f"v{visitor}")
        else:
            parts.append(KEY_NULL)
        parts += (KEY_NULL,) if path is None else (str(len(path)), path)
        parts.append(str(event.ts_us if event.client_ts_us is None else event.client_ts_us))
        text = ":".join(parts)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
