"""The batch body: an array of events, all valid or none queued, every problem listed with its index."""

from __future__ import annotations

import json
from typing import Any

import pytest

from analytics.events.contract import FieldError, InvalidInput, decode_event, decode_events
from tests.helpers.factories import RECEIVED_US

VALID = {"site_id": "s", "event_type": "page_view", "timestamp": "2025-11-12T19:30:01Z", "path": "/", "user_id": "u"}


def raw(items: Any) -> bytes:
    return json.dumps(items).encode()


def errors_of(body: bytes, max_events: int = 1000) -> list[FieldError]:
    with pytest.raises(InvalidInput) as caught:
        decode_events(body, RECEIVED_US, max_events)
    return caught.value.errors


def test_valid_batch_gives_one_record_per_event_in_order() -> None:
    events = [{**VALID, "path": f"/{n}"} for n in range(3)]
    assert decode_events(raw(events), RECEIVED_US, 1000) == [decode_event(raw(event), RECEIVED_US) for event in events]


def test_every_problem_is_listed_with_its_index() -> None:
    events = [VALID, {**VALID, "site_id": None}, "not an object", {**VALID, "timestamp": "nope", "path": 3}]
    assert errors_of(raw(events)) == [
        FieldError("body.1.site_id", "site_id is required"),
        FieldError("body.2", "body.2 must be a JSON object"),
        FieldError("body.3.path", "path must be a string"),
        FieldError("body.3.timestamp", "timestamp must be an ISO 8601 date-time, e.g. 2025-11-12T19:30:01Z"),
    ]


def test_nul_in_one_event_rejects_the_batch() -> None:
    assert errors_of(raw([VALID, {**VALID, "user_id": "a\u0000"}])) == [
        FieldError("body.1.user_id", "user_id must not contain NUL characters")
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (raw(VALID), "body must be a JSON array of events"),
        (raw([]), "body must hold at least one event"),
        (raw([VALID] * 4), "body may hold at most 3 events, got 4"),
        (b"[{", "body is not valid JSON"),
    ],
)
def test_body_level_problems(body: bytes, message: str) -> None:
    [error] = errors_of(body, max_events=3)
    assert error.path == "body"
    assert error.message.startswith(message)


def test_the_limit_is_inclusive() -> None:
    assert len(decode_events(raw([VALID] * 3), RECEIVED_US, 3)) == 3
