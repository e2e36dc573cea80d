"""The ingest contract: a request body decoded and validated into Submissions, with the contract's messages."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import msgspec

from analytics.errors import AnalyticsError

SITE_ID_MAX: Final = 256
EVENT_TYPE_MAX: Final = 64
PATH_MAX: Final = 2048
USER_ID_MAX: Final = 256
EVENT_ID_MAX: Final = 128
URL_MAX: Final = 2048
USER_AGENT_MAX: Final = 1024
IP_MAX: Final = 64
PROPS_MAX_KEYS: Final = 30
PROP_KEY_MAX: Final = 64
PROP_VALUE_MAX: Final = 256

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND: Final = timedelta(microseconds=1)
AHEAD_US: Final = 24 * 3600 * 1_000_000
TIMESTAMP_MESSAGE: Final = "timestamp must be an ISO 8601 date-time, e.g. 2025-11-12T19:30:01Z"
SENT_AT_MESSAGE: Final = "sent_at must be an ISO 8601 date-time, e.g. 2025-11-12T19:30:01Z"
WINDOW_MESSAGE: Final = (
    "timestamp must lie between 1970-01-01T00:00:00Z and 24 hours after the server's clock "
    "(after correcting by sent_at)"
)
URL_MESSAGE: Final = "url must be an absolute http or https URL"
IP_MESSAGE: Final = "ip must be an IPv4 or IPv6 address"
PROP_VALUE_MESSAGE: Final = "must be a string, number or boolean"

TIMESTAMP_SCHEMA: Final = {"format": "date-time", "description": "ISO 8601; without an offset, UTC"}
# An empty sent_at means absent, as every optional string does: the schema says so, or fuzzers expect a 400.
SENT_AT_SCHEMA: Final = {
    "anyOf": [{"format": "date-time"}, {"maxLength": 0}],
    "description": "ISO 8601: the client's clock when it sent the request (clock-skew correction); empty: absent",
}
# PostgreSQL text cannot hold NUL: such strings are refused (checked in code; the pattern documents it in OpenAPI).
NO_NUL: Final = {"pattern": "^[^\\u0000]*$"}


SiteId = Annotated[str, msgspec.Meta(min_length=1, max_length=SITE_ID_MAX, extra_json_schema=NO_NUL)]
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=EVENT_TYPE_MAX, extra_json_schema=NO_NUL)]
Path = Annotated[str, msgspec.Meta(max_length=PATH_MAX, extra_json_schema=NO_NUL)]
UserId = Annotated[str, msgspec.Meta(max_length=USER_ID_MAX, extra_json_schema=NO_NUL)]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=EVENT_ID_MAX, extra_json_schema=NO_NUL)]
Url = Annotated[str, msgspec.Meta(max_length=URL_MAX, extra_json_schema=NO_NUL)]
UserAgent = Annotated[str, msgspec.Meta(max_length=USER_AGENT_MAX, extra_json_schema=NO_NUL)]
IpText = Annotated[str, msgspec.Meta(max_length=IP_MAX)]
PropKey = Annotated[str, msgspec.Meta(min_length=1, max_length=PROP_KEY_MAX, extra_json_schema=NO_NUL)]
PropValue = Annotated[str, msgspec.Meta(max_length=PROP_VALUE_MAX, extra_json_schema=NO_NUL)] | int | float | bool
Props = Annotated[dict[PropKey, PropValue], msgspec.Meta(max_length=PROPS_MAX_KEYS)]
Timestamp = Annotated[str, msgspec.Meta(extra_json_schema=TIMESTAMP_SCHEMA)]
SentAt = Annotated[str, msgspec.Meta(extra_json_schema=SENT_AT_SCHEMA)]


class FieldError(msgspec.Struct, frozen=True):
    path: str
    message: str


# The fast path: msgspec checks types and lengths in C; anything it rejects is re-read by `_problems`. The docstring
# and the schema extras are what the OpenAPI document shows.
class EventIn(msgspec.Struct, frozen=True):
    """One analytics event. Unknown fields are ignored; an empty optional string means absent."""

    site_id: SiteId
    event_type: EventType
    # Parsed by `timestamp_microseconds`, not msgspec: msgspec rounds a 7th fractional digit (23:59:59.9999999
    # would become the next day) and refuses a leap second.
    timestamp: Timestamp
    path: Path | None = None
    user_id: UserId | None = None
    # v2 (docs/api.md): the identity, clock-skew correction, the page, its referrer, custom properties, and the two
    # fields a server relaying a browser's event sends in place of its own User-Agent and address.
    event_id: EventId | None = None
    sent_at: SentAt | None = None
    url: Url | None = None
    referrer: Url | None = None
    props: Props | None = None
    user_agent: UserAgent | None = None
    ip: IpText | None = None


class Submission(msgspec.Struct, gc=False):
    """A valid event with its times resolved: `ts_us` after clock-skew correction; `client_ts_us` the client's own
    timestamp when sent_at moved it (the identity key uses it, so a retry maps to the same key)."""

    body: EventIn
    ts_us: int
    client_ts_us: int | None


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
    if "\x00" in text:  # CPython 3.11's fromisoformat ignores everything from a NUL on
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


def is_web_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address; an IPv6 scope (`%eth0`, which may hold anything) is not part of one here."""
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _has_nul(event: EventIn) -> bool:
    if "\x00" in event.site_id or "\x00" in event.event_type:
        return True
    for text in (event.path, event.user_id, event.event_id, event.url, event.referrer, event.user_agent, event.ip):
        if text is not None and "\x00" in text:
            return True
    if event.props:
        for key, value in event.props.items():
            if "\x00" in key or (isinstance(value, str) and "\x00" in value):
                return True
    return False


def _submission(event: EventIn, received_us: int) -> Submission | None:
    """The Submission, or None when anything msgspec cannot check is wrong (the caller then lists every problem)."""
    if _has_nul(event):
        return None
    timestamp = timestamp_microseconds(event.timestamp)
    if timestamp is None:
        return None
    ts_us, client_ts_us = timestamp, None
    if event.sent_at:
        sent_us = timestamp_microseconds(event.sent_at)
        if sent_us is None:
            return None
        if sent_us != received_us:
            ts_us, client_ts_us = timestamp + (received_us - sent_us), timestamp
    if not 0 <= ts_us <= received_us + AHEAD_US:
        return None
    if (event.url and not is_web_url(event.url)) or (event.ip and not is_ip_address(event.ip)):
        return None
    return Submission(event, ts_us, client_ts_us)


def _string_problem(value: Any, name: str, maximum: int, *, required: bool = False, minimum: int = 0) -> str | None:
    if value is None or (value == "" and (required or minimum == 0)):
        return f"{name} is required" if required else None
    if not isinstance(value, str):
        return f"{name} must be a string"
    if len(value) > maximum or len(value) < minimum:
        if minimum and not required:
            return f"{name} must be {minimum} to {maximum} characters"
        return f"{name} must be at most {maximum} characters"
    if "\x00" in value:
        return f"{name} must not contain NUL characters"
    return None


STRING_FIELDS: Final = (
    ("site_id", SITE_ID_MAX, True, 1),
    ("event_type", EVENT_TYPE_MAX, True, 1),
    ("path", PATH_MAX, False, 0),
    ("user_id", USER_ID_MAX, False, 0),
    ("event_id", EVENT_ID_MAX, False, 1),
    ("url", URL_MAX, False, 0),
    ("referrer", URL_MAX, False, 0),
    ("user_agent", USER_AGENT_MAX, False, 0),
    ("ip", IP_MAX, False, 0),
)


def _problems(document: Any, prefix: str, received_us: int) -> list[FieldError]:
    """Every way `document` breaks the contract, one entry per problem, in field order."""
    if not isinstance(document, dict):
        return [FieldError(prefix, f"{prefix} must be a JSON object")]
    found: list[FieldError] = []
    for name, maximum, required, minimum in STRING_FIELDS:
        value = document.get(name)
        message = _string_problem(value, name, maximum, required=required, minimum=minimum)
        if message is None and value:
            if name == "url" and not is_web_url(value):
                message = URL_MESSAGE
            elif name == "ip" and not is_ip_address(value):
                message = IP_MESSAGE
        if message:
            found.append(FieldError(f"{prefix}.{name}", message))
    found += _props_problems(document.get("props"), f"{prefix}.props")
    sent_us: int | None = None
    sent_at = document.get("sent_at")
    if sent_at is not None and sent_at != "":
        sent_us = timestamp_microseconds(sent_at) if isinstance(sent_at, str) else None
        if sent_us is None:
            found.append(FieldError(f"{prefix}.sent_at", SENT_AT_MESSAGE))
    timestamp = document.get("timestamp")
    if timestamp is None or timestamp == "":
        found.append(FieldError(f"{prefix}.timestamp", "timestamp is required"))
    else:
        ts_us = timestamp_microseconds(timestamp) if isinstance(timestamp, str) else None
        if ts_us is None:
            found.append(FieldError(f"{prefix}.timestamp", TIMESTAMP_MESSAGE))
        elif not 0 <= ts_us + (0 if sent_us is None else received_us - sent_us) <= received_us + AHEAD_US:
            found.append(FieldError(f"{prefix}.timestamp", WINDOW_MESSAGE))
    return found


def _props_problems(props: Any, prefix: str) -> list[FieldError]:
    if props is None:
        return []
    if not isinstance(props, dict):
        return [FieldError(prefix, "props must be a JSON object")]
    found: list[FieldError] = []
    if len(props) > PROPS_MAX_KEYS:
        found.append(FieldError(prefix, f"props may hold at most {PROPS_MAX_KEYS} keys, got {len(props)}"))
    for key, value in props.items():
        where = f"{prefix}.{key}"
        if not 1 <= len(key) <= PROP_KEY_MAX:
            found.append(FieldError(where, f"props keys must be 1 to {PROP_KEY_MAX} characters"))
        elif "\x00" in key:
            found.append(FieldError(where, "props keys must not contain NUL characters"))
        if isinstance(value, str):
            message = _string_problem(value, f"props.{key}", PROP_VALUE_MAX)
            if message:
                found.append(FieldError(where, message))
        elif value is None or not isinstance(value, bool | int | float):
            found.append(FieldError(where, f"props.{key} {PROP_VALUE_MESSAGE}"))
    return found


def decode_event(body: bytes, received_us: int) -> Submission:
    """Decode and validate one event body; raise `InvalidInput` listing every problem."""
    try:
        event = _decode_event(body)
    except _UNREADABLE:
        pass
    else:
        submission = _submission(event, received_us)
        if submission is not None:
            return submission
    try:
        document = _decode_any(body)
    except _UNREADABLE as error:
        raise InvalidInput([FieldError("body", f"body is not valid JSON: {_reason(error)}")]) from None
    # The two readers agree (tests/unit/events/test_contract.py proves it with hypothesis): a 400 stays a 400.
    raise InvalidInput(_problems(document, "body", received_us) or [FieldError("body", "body is not a valid event")])


def submission_of(document: dict[str, Any], received_us: int) -> Submission:
    """Validate an event already decoded from another shape (Plausible's body); raise `InvalidInput` as above."""
    try:
        event = msgspec.convert(document, EventIn)
    except msgspec.ValidationError:
        pass
    else:
        submission = _submission(event, received_us)
        if submission is not None:
            return submission
    raise InvalidInput(_problems(document, "body", received_us) or [FieldError("body", "body is not a valid event")])


def decode_events(body: bytes, received_us: int, max_events: int) -> list[Submission]:
    """Decode a JSON array of events, all or nothing: any problem anywhere rejects the whole batch."""
    try:
        events = _decode_events(body)
    except _UNREADABLE:
        pass
    else:
        if 0 < len(events) <= max_events:
            submissions: list[Submission] = []
            for event in events:
                submission = _submission(event, received_us)
                if submission is None:
                    break
                submissions.append(submission)
            else:
                return submissions
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
    problems = [
        problem for index, item in enumerate(document) for problem in _problems(item, f"body.{index}", received_us)
    ]
    raise InvalidInput(problems or [FieldError("body", "body is not a valid batch of events")])


def _reason(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8"
    return str(error)
