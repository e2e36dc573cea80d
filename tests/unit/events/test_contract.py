"""The event contract as pure functions: what is accepted, what each bad input is told, the record format."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.events.contract import (
    TIMESTAMP_MESSAGE,
    FieldError,
    InvalidInput,
    decode_event,
    decode_events,
    epoch_microseconds,
)
from analytics.events.record import Event, decode_queued, encode_event
from tests.helpers.factories import RECEIVED_US, queued, v1_fields

VALID = {
    "site_id": "site-abc-123",
    "event_type": "page_view",
    "path": "/pricing",
    "user_id": "user-xyz-789",
    "timestamp": "2025-11-12T19:30:01Z",
}


def body(**changes: Any) -> bytes:
    document = {**VALID, **changes}
    return json.dumps({key: value for key, value in document.items() if value is not ...}).encode()


def record(raw: bytes) -> Event:
    return queued(decode_event(raw, RECEIVED_US))


def record_batch(raw: bytes, max_events: int) -> list[Event]:
    return [queued(submission) for submission in decode_events(raw, RECEIVED_US, max_events)]


def errors_of(raw: bytes) -> list[FieldError]:
    with pytest.raises(InvalidInput) as caught:
        decode_event(raw, RECEIVED_US)
    return caught.value.errors


def path_and_user(event: Event) -> tuple[str | None, str | None]:
    return event.path, event.user_id


def us(text: str) -> int:
    return epoch_microseconds(datetime.fromisoformat(text))


def test_valid_event_becomes_a_record() -> None:
    assert v1_fields(record(body())) == (
        "site-abc-123",
        "page_view",
        "/pricing",
        "user-xyz-789",
        us("2025-11-12T19:30:01+00:00"),
    )


@pytest.mark.parametrize(
    ("timestamp", "utc"),
    [
        ("2025-11-12T19:30:01Z", "2025-11-12T19:30:01+00:00"),
        ("2025-11-12T21:30:01+02:00", "2025-11-12T19:30:01+00:00"),
        ("2025-11-12T14:30:01-05:00", "2025-11-12T19:30:01+00:00"),
        ("2025-11-12T19:30:01", "2025-11-12T19:30:01+00:00"),
        ("2025-11-12T19:30:01.123456Z", "2025-11-12T19:30:01.123456+00:00"),
    ],
)
def test_timestamps_are_stored_as_utc(timestamp: str, utc: str) -> None:
    assert record(body(timestamp=timestamp)).ts_us == us(utc)


def test_optional_fields_may_be_absent_or_null() -> None:
    assert path_and_user(record(body(path=..., user_id=...))) == (None, None)
    assert path_and_user(record(body(path=None, user_id=None))) == (None, None)


def test_unknown_fields_are_ignored() -> None:
    assert record(body(other="https://example.com", extra={"nested": [1, 2]})) == record(body())


@pytest.mark.parametrize("field", ["site_id", "event_type", "timestamp"])
@pytest.mark.parametrize("value", [..., None, ""])
def test_missing_null_or_empty_required_field_is_required(field: str, value: Any) -> None:
    assert errors_of(body(**{field: value})) == [FieldError(f"body.{field}", f"{field} is required")]


def test_every_problem_is_reported_at_once() -> None:
    raw = body(site_id=..., event_type=7, timestamp="2025-13-45T00:00:00Z", path="x" * 2049, user_id=["u"])
    assert errors_of(raw) == [
        FieldError("body.site_id", "site_id is required"),
        FieldError("body.event_type", "event_type must be a string"),
        FieldError("body.path", "path must be at most 2048 characters"),
        FieldError("body.user_id", "user_id must be a string"),
        FieldError("body.timestamp", TIMESTAMP_MESSAGE),
    ]


@pytest.mark.parametrize(("field", "maximum"), [("site_id", 256), ("event_type", 64), ("path", 2048), ("user_id", 256)])
def test_length_limits_count_characters(field: str, maximum: int) -> None:
    record(body(**{field: "é" * maximum}))
    assert errors_of(body(**{field: "é" * (maximum + 1)})) == [
        FieldError(f"body.{field}", f"{field} must be at most {maximum} characters")
    ]


@pytest.mark.parametrize("field", ["site_id", "event_type", "path", "user_id"])
def test_nul_characters_are_refused(field: str) -> None:
    assert errors_of(body(**{field: "a\u0000b"})) == [
        FieldError(f"body.{field}", f"{field} must not contain NUL characters")
    ]


@pytest.mark.parametrize(
    "timestamp", ["2025-13-45T00:00:00Z", "2025-11-12", "yesterday", "2025-11-12T19:30Z", 1731439801, True, {}]
)
def test_bad_timestamps_say_what_is_expected(timestamp: Any) -> None:
    assert errors_of(body(timestamp=timestamp)) == [FieldError("body.timestamp", TIMESTAMP_MESSAGE)]


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null"])
def test_body_must_be_an_object(raw: bytes) -> None:
    assert errors_of(raw) == [FieldError("body", "body must be a JSON object")]


@pytest.mark.parametrize(
    "raw",
    [b"{bad", b"", b'{"site_id": "a"', b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000, b'{"a": "\\ud800"}'],
)
def test_unreadable_bodies_are_reported_on_the_body(raw: bytes) -> None:
    [error] = errors_of(raw)
    assert error.path == "body"
    assert error.message.startswith("body is not valid JSON")


def test_record_round_trips_through_its_encoding() -> None:
    event = record(body(path=None))
    event.accepted_ms = 1_762_975_802_000
    assert decode_queued(encode_event(event)) == event


def test_record_encoding_is_compact() -> None:
    assert len(encode_event(record(body()))) < 120


def test_a_record_queued_by_v1_decodes_with_every_v2_field_absent() -> None:
    v1_record = msgspec.msgpack.encode(("s", "page_view", "/p", "u", 1, 2))
    assert decode_queued(v1_record) == Event("s", "page_view", "/p", "u", 1, 2)
    assert decode_queued(v1_record).visitor is None


def test_undecodable_record_raises_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_queued(b"\x93\x01\x02")


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2025, 11, 12, 19, 30, 1, 1, tzinfo=UTC),
    ],
)
def test_epoch_microseconds_is_exact_at_any_year(moment: datetime) -> None:
    one = timedelta(microseconds=1)
    offset = moment.utcoffset()
    assert offset is not None
    wall_clock = (moment.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // one
    assert epoch_microseconds(moment) == wall_clock - offset // one


def outcome(raw: bytes) -> Event | InvalidInput:
    try:
        return record(raw)
    except InvalidInput as invalid:
        return invalid


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
field_values = (
    json_values
    | st.text(max_size=300)
    | st.sampled_from(["", "\x00", "2025-11-12T19:30:01Z", "2025-11-12T19:30:01+02:00", "2025-02-30T00:00:00"])
)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["site_id", "event_type", "timestamp", "path", "user_id", "other"]), field_values, max_size=6
    )
)
def test_any_object_is_either_a_record_or_a_complete_list_of_problems(document: dict[str, Any]) -> None:
    result = outcome(msgspec.json.encode(document))
    if isinstance(result, InvalidInput):
        assert result.errors
        assert all(error.path.startswith("body.") for error in result.errors)
        assert "body is not a valid event" not in [error.message for error in result.errors]
    else:
        assert result.site_id == document["site_id"]
        assert result.event_type == document["event_type"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_anything_but_invalid_input(raw: bytes) -> None:
    result = outcome(raw)
    assert not isinstance(result, InvalidInput) or result.errors


@pytest.mark.parametrize(
    ("timestamp", "utc"),
    [
        ("2025-12-31T23:59:59.9999999Z", "2025-12-31T23:59:59.999999+00:00"),
        ("2025-11-12T19:30:01.1234567891Z", "2025-11-12T19:30:01.123456+00:00"),
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999+00:00"),
        ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999999+00:00"),
        ("2017-01-01T00:59:60+01:00", "2016-12-31T23:59:59.999999+00:00"),
        ("2025-11-12t19:30:01z", "2025-11-12T19:30:01+00:00"),
        ("2025-11-12 19:30:01Z", "2025-11-12T19:30:01+00:00"),
    ],
)
def test_timestamps_are_truncated_to_microseconds_and_leap_seconds_accepted(timestamp: str, utc: str) -> None:
    assert record(body(timestamp=timestamp)).ts_us == us(utc)


@pytest.mark.parametrize("timestamp", ["2025-11-12", "2025-11-12T19:30Z", "2025-11-12T19:61:00Z", "2025-11-12T25:00Z"])
def test_date_times_that_are_not_full_are_refused(timestamp: str) -> None:
    assert errors_of(body(timestamp=timestamp)) == [FieldError("body.timestamp", TIMESTAMP_MESSAGE)]


def test_empty_optional_strings_are_absent() -> None:
    assert path_and_user(record(body(path="", user_id=""))) == (None, None)
    batch = json.dumps([VALID, {**VALID, "path": "", "user_id": ""}]).encode()
    assert path_and_user(record_batch(batch, 10)[1]) == (None, None)


def test_records_queued_with_empty_strings_decode_as_null() -> None:
    old = msgspec.msgpack.encode(("s", "page_view", "", "", 1, 2))
    assert decode_queued(old) == Event("s", "page_view", None, None, 1, 2)
