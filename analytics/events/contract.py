"""The ingest contract: a request body decoded and validated into Events, with the contract's messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import msgspec

from analytics.errors import AnalyticsError
from analytics.events.record import Event

SITE_ID_MAX: Final = 256
EVENT_TYPE_MAX: Final = 64
PATH_MAX: Final = 2048
USER_ID_MAX: Final = 256

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND: Final = timedelta(microseconds=1)
TIMESTAMP_MESSAGE: Final = "timestamp must be an ISO 8601 date-time, e.g. 2025-11-12T19:30:01Z"

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
    # Parsed by `timestamp_microseconds`, not msgspec: msgspec rounds a 7th fractional digit (23:59:59.9999999
    # would become the next day) and refuses a leap second.
    timestamp: Annotated[str, msgspec.Meta(extra_json_schema=TIMESTAMP_SCHEMA)]
    path: Annotated[str, msgspec.Meta(max_length=PATH_MAX, extra_json_schema=NO_NUL)] | None = None
    user_id: Annotated[str, msgspec.Meta(max_length=USER_ID_MAX, extra_json_schema=NO_NUL)] | None = None


class InvalidInput(AnalyticsError):
    """Every problem found in a request body, in the contract's `{path, message}` shape."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


_decode_event = msgspec.json.Decoder(EventIn).decode
_decode_events = msgspec.json.Decoder(list[EventIn]).decode
_decode_any = msgspec.json.Decoder().decode

# Exceptions msgspec raises on hostile input: malformed or invalid UTF-8 text, out-of-range numbers, deep nesting.
_UNREADABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def epoch_microseconds(timestamp: datetime) -> int:
    """UTC microseconds since 1970; a naive time is taken as UTC. Exact at any year, unlike a float."""
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    return (timestamp - EPOCH) // ONE_MICROSECOND


def timestamp_microseconds(text: str) -> int | None:
    """UTC microseconds of an ISO 8601 date-time, digits past the sixth truncated; None if it is not one.

    A leap second (23:59:60) is taken as 23:59:59.999999: PostgreSQL has no second 60, and this keeps the event in
    its minute and day. A lowercase `t` or `z` (RFC 3339 allows them) takes the slower path.
    """
    if len(text) < 19 or text[10] not in "Tt ":  # a date alone, or other short forms fromisoformat would accept
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        lenient = _lenient_timestamp(text)
        if lenient is None:
            return None
        parsed = lenient
    return epoch_microseconds(parsed)


def _lenient_timestamp(text: str) -> datetime | None:
    upper = text.upper()
    leap = upper[17:19] == "60"
    if leap:
        offset = upper[19:].lstrip(".,0123456789")  # the fraction of a leap second is dropped: :59.999999 stands
        upper = f"{upper[:17]}59{offset}"
    try:
        parsed = datetime.fromisoformat(upper)
    except ValueError:
        return None
    return parsed.replace(microsecond=999_999) if leap else parsed


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
    elif not isinstance(timestamp, str) or timestamp_microseconds(timestamp) is None:
        found.append(FieldError(f"{prefix}.timestamp", TIMESTAMP_MESSAGE))
    return found


def _to_event(event: EventIn) -> Event | None:
    """The Event, or None when the timestamp does not parse (the caller then lists every problem).

    An empty path or user_id means absent, as null does: in the key, in the rollups, in unique users.
    """
    microseconds = timestamp_microseconds(event.timestamp)
    if microseconds is None:
        return None
    return Event(event.site_id, event.event_type, event.path or None, event.user_id or None, microseconds)


def decode_event(body: bytes) -> Event:
    """Decode and validate one event body; raise `InvalidInput` listing every problem."""
    try:
        event = _decode_event(body)
    except _UNREADABLE:
        pass
    else:
        if not _has_nul(event):
            decoded = _to_event(event)
            if decoded is not None:
                return decoded
    try:
        document = _decode_any(body)
    except _UNREADABLE as error:
        raise InvalidInput([FieldError("body", f"body is not valid JSON: {_reason(error)}")]) from None
    # The two readers agree (tests/unit/events/test_contract.py proves it with hypothesis): a 400 stays a 400.
    raise InvalidInput(_problems(document, "body") or [FieldError("body", "body is not a valid event")])


def decode_events(body: bytes, max_events: int) -> list[Event]:
    """Decode a JSON array of events, all or nothing: any problem anywhere rejects the whole batch."""
    try:
        events = _decode_events(body)
    except _UNREADABLE:
        pass
    else:
        if 0 < len(events) <= max_events and not any(_has_nul(event) for event in events):
            decoded_events: list[Event] = []
            for event in events:
                decoded = _to_event(event)
                if decoded is None:
                    break
                decoded_events.append(decoded)
            else:
                return decoded_events
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
