"""Ingest contract v2 as pure functions: the optional fields at and past their limits, the timestamp window after
clock-skew correction, the identity key, and Plausible's Events API body."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analytics.enrich.pipeline import Requester
from analytics.events.contract import (
    IP_MESSAGE,
    SENT_AT_MESSAGE,
    TIMESTAMP_MESSAGE,
    URL_MESSAGE,
    WINDOW_MESSAGE,
    FieldError,
    InvalidInput,
    Submission,
    decode_event,
    decode_events,
    epoch_microseconds,
)
from analytics.events.plausible import decode_plausible
from analytics.events.record import Event, event_key
from tests.helpers.factories import CHROME, RECEIVED_US, queued

VALID = {"site_id": "site-abc-123", "event_type": "page_view", "timestamp": "2025-11-12T19:30:01Z"}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
PROP_VALUE = "props.k must be a string, number or boolean"
TOO_MANY_PROPS = "props may hold at most 30 keys, got 31"
PROP_KEY_LENGTH = "props keys must be 1 to 64 characters"
EVENT_ID_LENGTH = "event_id must be 1 to 128 characters"
RECEIVED = datetime(2027, 1, 15, 8, tzinfo=UTC)  # RECEIVED_US
DAY_US = 24 * 3600 * 1_000_000


def body(**changes: Any) -> bytes:
    document = {**VALID, **changes}
    return json.dumps({key: value for key, value in document.items() if value is not ...}).encode()


def decoded(raw: bytes, received_us: int = RECEIVED_US) -> Submission:
    return decode_event(raw, received_us)


def errors_of(raw: bytes, received_us: int = RECEIVED_US) -> list[FieldError]:
    with pytest.raises(InvalidInput) as caught:
        decode_event(raw, received_us)
    return caught.value.errors


def batch_errors_of(items: list[Any]) -> list[FieldError]:
    with pytest.raises(InvalidInput) as caught:
        decode_events(json.dumps(items).encode(), RECEIVED_US, 1000)
    return caught.value.errors


def us(moment: datetime) -> int:
    return epoch_microseconds(moment)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def web_url(length: int) -> str:
    prefix = "https://example.com/"
    return prefix + "a" * (length - len(prefix))


# --- the new optional fields at their limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"event_id": "e"},
        {"event_id": "é" * 128},
        {"event_id": "123e4567-e89b-12d3-a456-426614174000"},
        {"url": web_url(2048)},
        {"url": "http://example.com"},
        {"url": "HTTPS://EXAMPLE.COM/x?utm_source=news#top"},
        {"referrer": "r" * 2048},
        {"referrer": "https://news.ycombinator.com/item?id=1"},
        {"props": {f"k{n}": n for n in range(30)}},
        {"props": {"k" * 64: "v"}},
        {"props": {"k": "é" * 256}},
        {"props": {"s": "text", "i": -3, "big": 2**70, "f": 1.5, "e": 1e300, "t": True, "no": False, "empty": ""}},
        {"props": {}},
        {"user_agent": CHROME + " " + "x" * (1024 - len(CHROME) - 1)},
        {"ip": "81.2.69.160"},
        {"ip": "2001:db8::8a2e:370:7334"},
        {"ip": "::ffff:81.2.69.160"},
        {"sent_at": "2027-01-15T07:59:58.5+00:00"},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_each_new_field_is_accepted_up_to_its_limit(changes: dict[str, Any]) -> None:
    submission = decoded(body(**changes))
    for name, value in changes.items():
        assert getattr(submission.body, name) == value
    queued(submission)


def test_props_and_relay_fields_reach_the_record() -> None:
    event = queued(decoded(body(props={"plan": "pro", "seats": 3}, user_agent=FIREFOX, ip="2001:db8::1")))
    assert json.loads(event.props or "null") == {"plan": "pro", "seats": 3}
    assert (event.browser, event.os, event.device) == ("Firefox", "Linux", "desktop")


def test_url_gives_the_default_path_without_query_or_fragment_and_its_utm() -> None:
    event = queued(decoded(body(url="https://example.com/docs/a?utm_source=news&utm_medium=mail#part")))
    assert (event.path, event.utm_source, event.utm_medium, event.source) == ("/docs/a", "news", "mail", "news")
    assert queued(decoded(body(url="https://example.com/docs/a", path="/own"))).path == "/own"


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"event_id": "x" * 129}, [FieldError("body.event_id", EVENT_ID_LENGTH)]),
        ({"event_id": ""}, [FieldError("body.event_id", EVENT_ID_LENGTH)]),
        ({"event_id": 42}, [FieldError("body.event_id", "event_id must be a string")]),
        ({"event_id": "a\u0000b"}, [FieldError("body.event_id", "event_id must not contain NUL characters")]),
        ({"url": web_url(2049)}, [FieldError("body.url", "url must be at most 2048 characters")]),
        ({"url": "ftp://example.com/file"}, [FieldError("body.url", URL_MESSAGE)]),
        ({"url": "javascript:alert(1)"}, [FieldError("body.url", URL_MESSAGE)]),
        ({"url": "/path"}, [FieldError("body.url", URL_MESSAGE)]),
        ({"url": "example.com/path"}, [FieldError("body.url", URL_MESSAGE)]),
        ({"url": "http://"}, [FieldError("body.url", URL_MESSAGE)]),
        ({"url": "http://[::1"}, [FieldError("body.url", URL_MESSAGE)]),
        ({"url": "https://example.com/\u0000"}, [FieldError("body.url", "url must not contain NUL characters")]),
        ({"referrer": "r" * 3072}, [FieldError("body.referrer", "referrer must be at most 2048 characters")]),
        (
            {"referrer": "https://a.com/\u0000"},
            [FieldError("body.referrer", "referrer must not contain NUL characters")],
        ),
        ({"user_agent": "x" * 1025}, [FieldError("body.user_agent", "user_agent must be at most 1024 characters")]),
        ({"user_agent": "UA\u0000"}, [FieldError("body.user_agent", "user_agent must not contain NUL characters")]),
        ({"ip": "not-an-ip"}, [FieldError("body.ip", IP_MESSAGE)]),
        ({"ip": "256.1.1.1"}, [FieldError("body.ip", IP_MESSAGE)]),
        ({"ip": "81.2.69.160:443"}, [FieldError("body.ip", IP_MESSAGE)]),
        ({"ip": 1}, [FieldError("body.ip", "ip must be a string")]),
        ({"sent_at": "yesterday"}, [FieldError("body.sent_at", SENT_AT_MESSAGE)]),
        ({"sent_at": "2025-11-12"}, [FieldError("body.sent_at", SENT_AT_MESSAGE)]),
        ({"sent_at": 1731439801}, [FieldError("body.sent_at", SENT_AT_MESSAGE)]),
        ({"props": {f"k{n}": n for n in range(31)}}, [FieldError("body.props", TOO_MANY_PROPS)]),
        ({"props": {"k": {"nested": 1}}}, [FieldError("body.props.k", PROP_VALUE)]),
        ({"props": {"k": [1, 2]}}, [FieldError("body.props.k", PROP_VALUE)]),
        ({"props": {"k": None}}, [FieldError("body.props.k", PROP_VALUE)]),
        ({"props": {"k" * 65: 1}}, [FieldError(f"body.props.{'k' * 65}", PROP_KEY_LENGTH)]),
        ({"props": {"": 1}}, [FieldError("body.props.", PROP_KEY_LENGTH)]),
        ({"props": {"k": "v" * 257}}, [FieldError("body.props.k", "props.k must be at most 256 characters")]),
        ({"props": {"k\u0000": 1}}, [FieldError("body.props.k\u0000", "props keys must not contain NUL characters")]),
        ({"props": {"k": "v\u0000"}}, [FieldError("body.props.k", "props.k must not contain NUL characters")]),
        ({"props": ["k", 1]}, [FieldError("body.props", "props must be a JSON object")]),
        ({"props": "k=1"}, [FieldError("body.props", "props must be a JSON object")]),
    ],
)
def test_each_new_field_is_refused_past_its_limit(changes: dict[str, Any], errors: list[FieldError]) -> None:
    assert errors_of(body(**changes)) == errors


def test_every_bad_prop_is_listed() -> None:
    props = {**{f"k{n}": n for n in range(29)}, "deep": {"a": 1}, "k" * 65: "x" * 257}
    assert errors_of(body(props=props)) == [
        FieldError("body.props", TOO_MANY_PROPS),
        FieldError("body.props.deep", "props.deep must be a string, number or boolean"),
        FieldError(f"body.props.{'k' * 65}", PROP_KEY_LENGTH),
        FieldError(f"body.props.{'k' * 65}", f"props.{'k' * 65} must be at most 256 characters"),
    ]


def test_every_problem_is_reported_at_once_in_field_order() -> None:
    raw = body(
        site_id=...,
        timestamp="2025-11-12T19:30:01Z",
        event_id="",
        sent_at="soon",
        url="ftp://example.com/",
        referrer="r" * 3000,
        props={"k": [1]},
        user_agent="UA\u0000",
        ip="999.0.0.1",
        path=7,
    )
    assert errors_of(raw) == [
        FieldError("body.site_id", "site_id is required"),
        FieldError("body.path", "path must be a string"),
        FieldError("body.event_id", EVENT_ID_LENGTH),
        FieldError("body.url", URL_MESSAGE),
        FieldError("body.referrer", "referrer must be at most 2048 characters"),
        FieldError("body.user_agent", "user_agent must not contain NUL characters"),
        FieldError("body.ip", IP_MESSAGE),
        FieldError("body.props.k", PROP_VALUE),
        FieldError("body.sent_at", SENT_AT_MESSAGE),
    ]


def test_batch_problems_are_reported_per_index() -> None:
    items = [
        {**VALID, "event_id": "ok", "props": {"a": 1}},
        {**VALID, "event_id": ""},
        {**VALID, "props": {"k": {"x": 1}}, "url": "/relative"},
        {**VALID, "ip": "nope", "sent_at": "later"},
    ]
    assert batch_errors_of(items) == [
        FieldError("body.1.event_id", EVENT_ID_LENGTH),
        FieldError("body.2.url", URL_MESSAGE),
        FieldError("body.2.props.k", PROP_VALUE),
        FieldError("body.3.ip", IP_MESSAGE),
        FieldError("body.3.sent_at", SENT_AT_MESSAGE),
    ]


def test_a_valid_v2_batch_decodes_like_its_single_events() -> None:
    items = [
        {**VALID, "event_id": f"id-{n}", "url": "https://example.com/a", "props": {"n": n}, "sent_at": iso(RECEIVED)}
        for n in range(3)
    ]
    expected = [decoded(json.dumps(item).encode()) for item in items]
    assert decode_events(json.dumps(items).encode(), RECEIVED_US, 3) == expected


# --- empty strings --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["url", "referrer", "user_agent", "ip", "sent_at"])
def test_an_empty_optional_string_means_absent(field: str) -> None:
    submission = decoded(body(**{field: ""}))
    assert (submission.ts_us, submission.client_ts_us) == (decoded(body()).ts_us, None)
    assert queued(submission) == queued(decoded(body()))


def test_an_empty_event_id_is_not_absent() -> None:
    assert errors_of(body(event_id="")) == [FieldError("body.event_id", EVENT_ID_LENGTH)]


# --- the timestamp window -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T01:59:59+02:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "2027-01-16T08:00:00.000001Z",
        "2027-01-16T09:00:00.000001+01:00",
    ],
)
def test_a_timestamp_outside_the_window_is_refused(timestamp: str) -> None:
    assert errors_of(body(timestamp=timestamp)) == [FieldError("body.timestamp", WINDOW_MESSAGE)]


@pytest.mark.parametrize(
    ("timestamp", "ts_us"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T02:00:00+02:00", 0),
        ("2027-01-16T08:00:00Z", RECEIVED_US + DAY_US),
        ("2027-01-16T03:00:00-05:00", RECEIVED_US + DAY_US),
    ],
)
def test_the_window_edges_are_accepted(timestamp: str, ts_us: int) -> None:
    assert decoded(body(timestamp=timestamp)).ts_us == ts_us


def test_the_window_is_relative_to_the_receive_time() -> None:
    later = RECEIVED_US + DAY_US
    assert errors_of(body(timestamp="2027-01-17T08:00:00.000001Z"), later) == [
        FieldError("body.timestamp", WINDOW_MESSAGE)
    ]
    assert decoded(body(timestamp="2027-01-17T08:00:00Z"), later).ts_us == later + DAY_US


def test_a_client_clock_two_days_behind_is_corrected_to_the_receive_time() -> None:
    behind = RECEIVED - timedelta(days=2)
    submission = decoded(body(timestamp=iso(behind), sent_at=iso(behind)))
    assert (submission.ts_us, submission.client_ts_us) == (RECEIVED_US, us(behind))


def test_a_client_clock_two_days_ahead_is_corrected_into_the_window() -> None:
    ahead = RECEIVED + timedelta(days=2)
    assert errors_of(body(timestamp=iso(ahead))) == [FieldError("body.timestamp", WINDOW_MESSAGE)]
    submission = decoded(body(timestamp=iso(ahead - timedelta(seconds=5)), sent_at=iso(ahead)))
    assert (submission.ts_us, submission.client_ts_us) == (RECEIVED_US - 5_000_000, us(ahead) - 5_000_000)


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("2027-01-15T07:00:00Z", "2027-01-14T07:00:00Z"),  # an hour ago by a clock a day slow: 23 h from now
        ("2027-01-15T08:00:00Z", "2027-01-14T08:00:00Z"),  # exactly 24 h ahead after correction
        ("1970-01-01T00:00:00Z", "2027-01-15T08:00:00Z"),  # no correction at all
        ("1970-01-01T00:00:01Z", "2027-01-15T08:00:01Z"),  # corrected to the epoch itself
    ],
)
def test_the_window_edges_hold_after_correction(timestamp: str, sent_at: str) -> None:
    decoded(body(timestamp=timestamp, sent_at=sent_at))


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("2027-01-15T08:00:00.000001Z", "2027-01-14T08:00:00Z"),  # a microsecond past 24 h once corrected
        ("1970-01-01T00:00:01Z", "2027-01-15T08:00:01.000001Z"),  # a microsecond before 1970 once corrected
        ("2025-11-12T19:30:01Z", "1970-01-01T00:00:00Z"),  # in the window as sent, years ahead once corrected
        ("1970-01-02T00:00:00Z", "2027-01-20T00:00:00Z"),  # in the window as sent, before 1970 once corrected
    ],
)
def test_a_timestamp_corrected_out_of_the_window_is_refused(timestamp: str, sent_at: str) -> None:
    assert errors_of(body(timestamp=timestamp, sent_at=sent_at)) == [FieldError("body.timestamp", WINDOW_MESSAGE)]


def test_a_bad_sent_at_and_a_bad_timestamp_are_both_reported() -> None:
    assert errors_of(body(timestamp="2025-13-45T00:00:00Z", sent_at="now")) == [
        FieldError("body.sent_at", SENT_AT_MESSAGE),
        FieldError("body.timestamp", TIMESTAMP_MESSAGE),
    ]


def test_window_problems_in_a_batch_carry_the_index() -> None:
    assert batch_errors_of([VALID, {**VALID, "timestamp": "9999-12-31T23:59:59Z"}]) == [
        FieldError("body.1.timestamp", WINDOW_MESSAGE)
    ]


# --- clock-skew correction ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("2027-01-15T07:58:30Z", "2027-01-15T07:59:00Z"),  # client 1 minute behind
        ("2027-01-15T08:10:00Z", "2027-01-15T08:15:00Z"),  # client 15 minutes ahead
        ("2027-01-15T09:58:30.123456+02:00", "2027-01-15T05:59:00.5-02:00"),  # offsets on both
        ("2025-11-12T19:30:01Z", "2025-11-12T19:30:05Z"),  # sent a while after it happened, by a wrong clock
    ],
)
def test_the_stored_time_is_corrected_by_the_clock_skew(timestamp: str, sent_at: str) -> None:
    client, sent = us(datetime.fromisoformat(timestamp)), us(datetime.fromisoformat(sent_at))
    submission = decoded(body(timestamp=timestamp, sent_at=sent_at))
    assert submission.ts_us == client + (RECEIVED_US - sent)
    assert submission.client_ts_us == client
    event = queued(submission)
    assert (event.ts_us, event.client_ts_us) == (submission.ts_us, client)


def test_without_sent_at_the_timestamp_is_stored_as_sent() -> None:
    submission = decoded(body(timestamp="2027-01-15T07:58:30Z"))
    assert (submission.ts_us, submission.client_ts_us) == (us(datetime(2027, 1, 15, 7, 58, 30, tzinfo=UTC)), None)


def test_a_sent_at_equal_to_the_receive_time_corrects_nothing() -> None:
    for sent_at in ("2027-01-15T08:00:00Z", "2027-01-15T09:00:00+01:00"):
        submission = decoded(body(timestamp="2027-01-15T07:58:30Z", sent_at=sent_at))
        assert (submission.ts_us, submission.client_ts_us) == (us(datetime(2027, 1, 15, 7, 58, 30, tzinfo=UTC)), None)


# --- identity -------------------------------------------------------------------------------------------------------


def key(raw: bytes, received_us: int = RECEIVED_US, requester: Requester | None = None) -> str:
    submission = decoded(raw, received_us)
    return event_key(queued(submission) if requester is None else queued(submission, requester))


def test_one_event_id_is_one_event_whatever_else_changed() -> None:
    first = key(body(event_id="id-1", user_id="u"))
    assert key(body(event_id="id-1", timestamp="2026-01-01T00:00:00Z", path="/other", event_type="click")) == first
    assert key(body(event_id="id-1", props={"a": 1}), requester=Requester(FIREFOX, "10.0.0.9", "DE")) == first
    assert key(body(event_id="id-1", site_id="another-site")) != first


def test_different_event_ids_are_different_events() -> None:
    assert key(body(event_id="id-1")) != key(body(event_id="id-2"))
    assert key(body(event_id="id-1")) != key(body())


@pytest.mark.parametrize("changes", [{"event_id": "id-1"}, {"user_id": "u-1"}, {}])
def test_a_retry_sent_later_is_the_same_event(changes: dict[str, Any]) -> None:
    fields = {"timestamp": "2027-01-15T07:00:00Z", **changes}
    first = decoded(body(sent_at="2027-01-15T07:00:02Z", **fields), RECEIVED_US)
    retry = decoded(body(sent_at="2027-01-15T07:30:00Z", **fields), RECEIVED_US + 3_600_000_000)
    assert first.ts_us != retry.ts_us
    assert event_key(queued(first)) == event_key(queued(retry))
    unsent = decoded(body(**fields), RECEIVED_US)  # and the same client time sent without sent_at at all
    assert event_key(queued(unsent)) == event_key(queued(first))


@pytest.mark.parametrize(
    "other",
    [Requester(CHROME, "81.2.69.161", None), Requester(FIREFOX, "81.2.69.160", None)],
    ids=["address", "user-agent"],
)
def test_two_anonymous_visitors_in_the_same_microsecond_are_two_events(other: Requester) -> None:
    raw = body(path="/pricing")
    assert key(raw) != key(raw, requester=other)


def test_relay_fields_identify_the_browser_not_the_relay() -> None:
    relayed = body(path="/pricing", user_agent=FIREFOX, ip="2001:db8::1")
    assert key(relayed, requester=Requester(CHROME, "10.0.0.1", None)) == key(
        body(path="/pricing"), requester=Requester(FIREFOX, "2001:db8::1", None)
    )
    assert key(relayed) != key(body(user_agent=FIREFOX, ip="2001:db8::2", path="/pricing"))


def test_the_same_anonymous_event_from_the_same_visitor_is_one_event() -> None:
    raw = body(path="/pricing", url="https://example.com/pricing?utm_source=a", props={"x": 1})
    assert key(raw) == key(raw)
    assert key(raw) == key(raw, requester=Requester(CHROME, "81.2.69.160", "GB"))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"url": "https://example.com/pricing?utm_source=ad", "referrer": "https://news.ycombinator.com/"},
        {"props": {"plan": "pro"}, "user_agent": FIREFOX, "ip": "2001:db8::1"},
        {"sent_at": "2025-11-12T19:35:01Z"},
    ],
)
@pytest.mark.parametrize(
    "requester", [Requester(CHROME, "81.2.69.160", None), Requester(FIREFOX, "10.1.2.3", "FR")], ids=["a", "b"]
)
def test_an_event_with_a_user_id_keeps_the_v1_key(changes: dict[str, Any], requester: Requester) -> None:
    raw = body(path="/pricing", user_id="user-xyz-789", **changes)
    v1 = Event(
        "site-abc-123", "page_view", "/pricing", "user-xyz-789", us(datetime(2025, 11, 12, 19, 30, 1, tzinfo=UTC))
    )
    assert key(raw, requester=requester) == event_key(v1)


def test_an_empty_user_id_is_anonymous() -> None:
    assert key(body(user_id="")) == key(body())
    assert key(body(user_id="")) != key(body(user_id="", ip="10.9.9.9"))


# --- Plausible's Events API -----------------------------------------------------------------------------------------


def plausible(document: dict[str, Any]) -> list[Submission]:
    return decode_plausible(json.dumps(document).encode(), RECEIVED_US)


def plausible_errors(document: dict[str, Any] | bytes) -> list[FieldError]:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(InvalidInput) as caught:
        decode_plausible(raw, RECEIVED_US)
    return caught.value.errors


PAGEVIEW = {
    "n": "pageview",
    "u": "https://example.com/a?utm_source=x",
    "d": "example.com",
    "r": "https://news.ycombinator.com/",
}


def test_a_plausible_pageview_is_a_page_view_at_the_receive_time() -> None:
    [submission] = plausible(PAGEVIEW)
    assert (submission.body.site_id, submission.body.event_type) == ("example.com", "page_view")
    assert (submission.body.url, submission.body.referrer) == (PAGEVIEW["u"], PAGEVIEW["r"])
    assert (submission.ts_us, submission.client_ts_us) == (RECEIVED_US, None)
    event = queued(submission)
    assert (event.path, event.utm_source, event.source, event.ts_us) == ("/a", "x", "x", RECEIVED_US)


def test_plausible_long_names_work_too() -> None:
    [submission] = plausible(
        {
            "name": "pageview",
            "url": "https://example.com/a",
            "domain": "example.com",
            "referrer": "https://news.ycombinator.com/",
            "props": {"author": "ann"},
        }
    )
    assert (submission.body.site_id, submission.body.event_type, submission.body.url) == (
        "example.com",
        "page_view",
        "https://example.com/a",
    )
    assert submission.body.props == {"author": "ann"}
    assert queued(submission).source == "news.ycombinator.com"


def test_plausible_several_domains_are_one_event_each() -> None:
    submissions = plausible({**PAGEVIEW, "d": "a.com,b.com"})
    assert [submission.body.site_id for submission in submissions] == ["a.com", "b.com"]
    assert [submission.body.site_id for submission in plausible({**PAGEVIEW, "d": " a.com , b.com ,"})] == [
        "a.com",
        "b.com",
    ]


@pytest.mark.parametrize("props", [json.dumps({"plan": "pro", "seats": 3}), {"plan": "pro", "seats": 3}])
def test_plausible_props_as_json_text_or_object(props: Any) -> None:
    [submission] = plausible({**PAGEVIEW, "p": props})
    assert submission.body.props == {"plan": "pro", "seats": 3}


def test_plausible_props_are_kept_as_plausible_keeps_them_not_refused() -> None:
    """Not the v2 rule (a 400): plausible.py drops what Plausible drops, cuts what it cuts, keeps the first 30."""
    many = {f"k{n:02}": n for n in range(31)}
    for props in (many, json.dumps(many)):
        [submission] = plausible({**PAGEVIEW, "p": props})
        assert submission.body.props == {f"k{n:02}": n for n in range(30)}
    odd = {"nested": {"x": 1}, "list": [1], "null": None, "empty": "", "k" * 65: 1, "": 1, "long": "v" * 300, "ok": 1}
    [submission] = plausible({**PAGEVIEW, "p": odd})
    assert submission.body.props == {"long": "v" * 256, "ok": 1}
    for nothing in ("not json", "[1]", [1], {"nested": {"x": 1}}):
        [submission] = plausible({**PAGEVIEW, "p": nothing})
        assert submission.body.props is None


@pytest.mark.parametrize("spelling", ["props", "p", "meta", "m"])
def test_plausible_props_in_any_spelling(spelling: str) -> None:
    [submission] = plausible({**PAGEVIEW, spelling: {"a": 1}})
    assert submission.body.props == {"a": 1}


def test_plausible_drops_www_from_the_domain() -> None:
    assert [s.body.site_id for s in plausible({**PAGEVIEW, "d": "www.example.com, www.b.com"})] == [
        "example.com",
        "b.com",
    ]


def test_plausible_hash_mode_keeps_the_fragment_in_the_path() -> None:
    [hashed] = plausible({**PAGEVIEW, "u": "https://example.com/app#/settings", "h": 1})
    assert queued(hashed).path == "/app#/settings"
    [root] = plausible({**PAGEVIEW, "u": "https://example.com#/settings", "h": 1})
    assert queued(root).path == "/#/settings"
    [plain] = plausible({**PAGEVIEW, "u": "https://example.com/app#/settings"})
    assert queued(plain).path == "/app"


def test_plausible_custom_event_name_is_the_event_type() -> None:
    [submission] = plausible({**PAGEVIEW, "n": "Signup", "revenue": {"amount": "9.99", "currency": "EUR"}})
    assert submission.body.event_type == "Signup"


def test_plausible_engagement_events_are_not_stored() -> None:
    assert plausible({**PAGEVIEW, "n": "engagement", "sd": 80, "e": 12_000}) == []


def test_plausible_fields_of_the_wrong_type_are_each_named_in_the_spelling_sent() -> None:
    assert plausible_errors({**PAGEVIEW, "name": 1, "u": [], "domain": {}, "r": 5}) == [
        FieldError("body.name", "name must be a string"),
        FieldError("body.u", "u must be a string"),
        FieldError("body.domain", "domain must be a string"),
        FieldError("body.r", "r must be a string"),
    ]


@pytest.mark.parametrize("missing", [{}, {"n": None, "u": "", "d": " , "}])
def test_plausible_missing_fields_are_each_listed(missing: dict[str, Any]) -> None:
    assert plausible_errors(missing) == [
        FieldError("body.name", "name is required"),
        FieldError("body.url", "url is required"),
        FieldError("body.domain", "domain is required"),
    ]


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"u": "ftp://example.com/a"}, [FieldError("body.url", URL_MESSAGE)]),
        ({"u": "/a"}, [FieldError("body.url", URL_MESSAGE)]),
        ({"n": "x" * 65}, [FieldError("body.name", "name must be at most 64 characters")]),
        ({"d": "d" * 257}, [FieldError("body.domain", "domain must be at most 256 characters")]),
        ({"r": "x" * 2049}, [FieldError("body.referrer", "referrer must be at most 2048 characters")]),
    ],
)
def test_plausible_problems_are_reported_on_the_plausible_field(
    changes: dict[str, Any], errors: list[FieldError]
) -> None:
    assert plausible_errors({**PAGEVIEW, **changes}) == errors


@pytest.mark.parametrize(("raw", "message"), [(b"[]", "body must be a JSON object"), (b"{", "body is not valid JSON")])
def test_plausible_body_level_problems(raw: bytes, message: str) -> None:
    [error] = plausible_errors(raw)
    assert error.path == "body"
    assert error.message.startswith(message)


# --- defects found while writing these tests, fixed ----------------------------------------------------------------


def test_an_ip_with_nul_is_refused() -> None:
    assert errors_of(body(ip="fe80::1%\u0000")) == [FieldError("body.ip", "ip must not contain NUL characters")]


@pytest.mark.parametrize("field", ["timestamp", "sent_at"])
def test_a_date_time_with_nul_and_trailing_text_is_refused(field: str) -> None:
    message = TIMESTAMP_MESSAGE if field == "timestamp" else SENT_AT_MESSAGE
    assert errors_of(body(**{field: "2027-01-15T07:00:00Z\u0000junk"})) == [FieldError(f"body.{field}", message)]


def test_plausible_a_domain_that_is_only_www_is_required() -> None:
    assert plausible_errors({**PAGEVIEW, "d": "www."}) == [FieldError("body.domain", "domain is required")]


def test_plausible_reports_a_long_url_once() -> None:
    assert plausible_errors({**PAGEVIEW, "u": "https://example.com/#" + "a" * 2100, "h": 1}) == [
        FieldError("body.url", "url must be at most 2048 characters")
    ]
