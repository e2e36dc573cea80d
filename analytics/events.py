"""The event contract: decoding, validation with the contract's messages, and the compact queue record."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import msgspec

SITE_ID_MAX: Final = 256
EVENT_TYPE_MAX: Final = 64
PATH_MAX: Final = 2048
USER_ID_MAX: Final = 256

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND: Final = timedelta(microseconds=1)
TIMESTAMP_MESSAGE: Final = "timestamp must be an ISO 8601 date-time, e.g. 2025-11-12T19:30:01Z"

# An event: (site_id, event_type, path, user_id, UTC microseconds since 1970).
Record = tuple[str, str, str | None, str | None, int]
# What the queue carries and the writer copies: the event and when it was accepted (ms since 1970, for lag).
Queued = tuple[str, str, str | None, str | None, int, int]


TIMESTAMP_SCHEMA: Final = {"format": "date-time", "description": "ISO 8601; without an offset, UTC"}
# PostgreSQL text cannot hold NUL: such strings are refused (checked in code; the pattern documents it in OpenAPI).
NO_NUL: Final = {"pattern": "^[^\\u0000]*$"}


class FieldError(msgspec.Struct, frozen=True):
    path: str
    message: str


# The fast path: msgspec checks types and lengths in C; anything it rejects is re-read by `_problems`. The docstring
# and the schema extras are what the OpenAPI document shows.
class EventIn(msgspec.Struct, frozen=True):
    """One analytics event. Unknown fields are ignored."""

    site_id: Annotated[str, msgspec.Meta(min_length=1, max_length=SITE_ID_MAX, extra_json_schema=NO_NUL)]
    event_type: Annotated[str, msgspec.Meta(min_length=1, max_length=EVENT_TYPE_MAX, extra_json_schema=NO_NUL)]
    timestamp: Annotated[datetime, msgspec.Meta(extra_json_schema=TIMESTAMP_SCHEMA)]
    path: Annotated[str, msgspec.Meta(max_length=PATH_MAX, extra_json_schema=NO_NUL)] | None = None
    user_id: Annotated[str, msgspec.Meta(max_length=USER_ID_MAX, extra_json_schema=NO_NUL)] | None = None


class InvalidInput(Exception):
    """Every problem found in a request body, in the contract's `{path, message}` shape."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


_decode_event = msgspec.json.Decoder(EventIn).decode
_decode_events = msgspec.json.Decoder(list[EventIn]).decode
_decode_any = msgspec.json.Decoder().decode
_encode_record = msgspec.msgpack.Encoder().encode
_decode_record: msgspec.msgpack.Decoder[Queued] = msgspec.msgpack.Decoder(Queued)

# Exceptions msgspec raises on hostile input: malformed or invalid UTF-8 text, out-of-range numbers, deep nesting.
_UNREADABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def epoch_microseconds(timestamp: datetime) -> int:
    """UTC microseconds since 1970; a naive time is taken as UTC. Exact at any year, unlike a float."""
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    return (timestamp - EPOCH) // ONE_MICROSECOND


def _has_nul(event: EventIn) -> bool:
    return (
        "\x00" in event.site_id
        or "\x00" in event.event_type
        or (event.path is not None and "\x00" in event.path)
        or (event.user_id is not None and "\x00" in event.user_id)
    )


def _string_problem(value: Any, name: str, maximum: int, *, required: bool) -> str | None:
    if value is None or (required and value == ""):
        return f"{name} is required" if required else None
    if not isinstance(value, str):
        return f"{name} must be a string"
    if len(value) > maximum:
        return f"{name} must be at most {maximum} characters"
    if "\x00" in value:
        return f"{name} must not contain NUL characters"
    return None


def _problems(document: Any, prefix: str) -> list[FieldError]:
    """Every way `document` breaks the contract, one entry per field, in field order."""
    if not isinstance(document, dict):
        return [FieldError(prefix, f"{prefix} must be a JSON object")]
    found: list[FieldError] = []
    for name, maximum, required in (
        ("site_id", SITE_ID_MAX, True),
        ("event_type", EVENT_TYPE_MAX, True),
        ("path", PATH_MAX, False),
        ("user_id", USER_ID_MAX, False),
    ):
        message = _string_problem(document.get(name), name, maximum, required=required)
        if message:
            found.append(FieldError(f"{prefix}.{name}", message))
    timestamp = document.get("timestamp")
    if timestamp is None or timestamp == "":
        found.append(FieldError(f"{prefix}.timestamp", "timestamp is required"))
    elif _parse_timestamp(timestamp) is None:
        found.append(FieldError(f"{prefix}.timestamp", TIMESTAMP_MESSAGE))
    return found


def _parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return msgspec.convert(value, datetime)
    except msgspec.ValidationError:
        return None


def _to_record(event: EventIn) -> Record:
    return (event.site_id, event.event_type, event.path, event.user_id, epoch_microseconds(event.timestamp))


def decode_event(body: bytes) -> Record:
    """Decode and validate one event body; raise `InvalidInput` listing every problem."""
    try:
        event = _decode_event(body)
    except _UNREADABLE:
        pass
    else:
        if not _has_nul(event):
            return _to_record(event)
    try:
        document = _decode_any(body)
    except _UNREADABLE as error:
        raise InvalidInput([FieldError("body", f"body is not valid JSON: {_reason(error)}")]) from None
    # The two readers agree (tests/unit/test_events.py proves it with hypothesis); the fallback keeps a 400 a 400.
    raise InvalidInput(_problems(document, "body") or [FieldError("body", "body is not a valid event")])


def decode_events(body: bytes, max_events: int) -> list[Record]:
    """Decode a JSON array of events, all or nothing: any problem anywhere rejects the whole batch."""
    try:
        events = _decode_events(body)
    except _UNREADABLE:
        pass
    else:
        if 0 < len(events) <= max_events and not any(_has_nul(event) for event in events):
            return [_to_record(event) for event in events]
    try:
        document = _decode_any(body)
    except _UNREADABLE as error:
        raise InvalidInput([FieldError("body", f"body is not valid JSON: {_reason(error)}")]) from None
    if not isinstance(document, list):
        raise InvalidInput([FieldError("body", "body must be a JSON array of events")])
    if not document:
        raise InvalidInput([FieldError("body", "body must hold at least one event")])
    if len(document) > max_events:
        raise InvalidInput([FieldError("body", f"body may hold at most {max_events} events, got {len(document)}")])
    problems = [problem for index, item in enumerate(document) for problem in _problems(item, f"body.{index}")]
    raise InvalidInput(problems or [FieldError("body", "body is not a valid batch of events")])


def _reason(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8"
    return str(error)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode_record(record: Record, accepted_ms: int | None = None) -> bytes:
    """The queue's msgpack array: the event, then when it was accepted (default: now)."""
    return _encode_record((*record, now_ms() if accepted_ms is None else accepted_ms))


def decode_record(data: bytes) -> Queued:
    """Raise `msgspec.DecodeError` (or `ValidationError`) for bytes that are not a record."""
    return _decode_record.decode(data)


def event_key(site_id: str, event_type: str, user_id: str | None, path: str | None, ts_us: int) -> str:
    """The idempotency key, exactly as the SQL function `event_key` (migrations/0003.event_key.sql) computes it.

    Computed here so PostgreSQL, the writer's bottleneck, does not (3.7 us a row there). Lengths are in characters,
    as PostgreSQL's `length()` counts them; NULL is `n`, with no value after it (`concat_ws` skips NULLs). Returned as
    the hex digits a `uuid` column takes: asyncpg parses those in C, where building `uuid.UUID`s cost more than md5.
    """
    parts = [str(len(site_id)), site_id, str(len(event_type)), event_type]
    parts += ("n",) if user_id is None else (str(len(user_id)), user_id)
    parts += ("n",) if path is None else (str(len(path)), path)
    parts.append(str(ts_us))
    return hashlib.md5(":".join(parts).encode(), usedforsecurity=False).hexdigest()
