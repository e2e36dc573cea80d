"""The two readers of a v2 body agree: msgspec's fast path accepts exactly what `_problems` finds nothing wrong with,
and everything it refuses is listed field by field, never as the catch-all. Every accepted body can be enriched and
keyed; no bytes escape as anything but InvalidInput."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.enrich.country import no_country
from analytics.enrich.pipeline import Enricher
from analytics.events.contract import InvalidInput, Submission, _problems, decode_event, decode_events
from analytics.events.plausible import decode_plausible
from analytics.events.record import Event, decode_queued, encode_event, event_key
from tests.helpers.factories import BROWSER, CHROME, RECEIVED_US, SALT

CATCH_ALL = ("body is not a valid event", "body is not a valid batch of events")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)


# Text without NUL (the contract refuses NUL anywhere): what a valid string field is made of.
clean = st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])


def clean_text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(clean, min_size=min_size, max_size=max_size)


def field(valid: st.SearchStrategy[Any], *telling: Any) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """A field's valid values, and everything it may be sent as: valid, its telling examples (at a limit, just past
    it, of the wrong kind), absent-like values, NUL, any text or any JSON."""
    anything = valid | st.sampled_from([None, "", "a\x00b", *telling]) | st.text(max_size=40) | json_values
    return valid, anything


def web_urls() -> st.SearchStrategy[str]:
    hosts = st.sampled_from(["example.com", "www.example.com", "news.ycombinator.com", "[::1]", "127.0.0.1:8080"])
    rests = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="/?&=#_-.%"), max_size=30)
    return st.builds("{}://{}/{}".format, st.sampled_from(["http", "https", "HTTPS"]), hosts, rests)


IN_WINDOW = [
    "2025-11-12T19:30:01Z",
    "2025-11-12T21:30:01.5+02:00",
    "2027-01-15T08:00:00Z",
    "2027-01-16T08:00:00Z",
    "1970-01-01T00:00:00Z",
    "2016-12-31T23:59:60Z",
    "2025-11-12t19:30:01z",
    "2025-11-12 19:30:01.1234567Z",
]
OUT_OF_WINDOW_OR_NOT_TIMES = [
    "2027-01-16T08:00:00.000001Z",
    "1969-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "2025-13-45T00:00:00Z",
    "2025-11-12",
    "2025-11-12T19:30Z",
    "yesterday",
    1731439801,
]
prop_keys = st.sampled_from(["", "k" * 64, "k" * 65, "k\x00", "é" * 65]) | st.text(max_size=8)
valid_prop_values = (
    clean_text(0, 256)
    | st.sampled_from(["v" * 256, "é" * 256, 2**70, -(2**70), 1e300])
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
)
valid_props = st.dictionaries(clean_text(1, 64), valid_prop_values, max_size=30)
FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "site_id": field(st.sampled_from(["site-abc-123", "é" * 256]) | clean_text(1, 20), "x" * 257),
    "event_type": field(st.sampled_from(["page_view", "click", "e" * 64]) | clean_text(1, 10), "e" * 65),
    "timestamp": field(st.sampled_from(IN_WINDOW), *OUT_OF_WINDOW_OR_NOT_TIMES),
    "path": field(st.sampled_from([None, "", "/pricing", "/" * 2048]) | clean_text(0, 20), "/" * 2049),
    "user_id": field(st.sampled_from([None, "", "u" * 256]) | clean_text(0, 20), "u" * 257),
    "event_id": field(
        st.sampled_from(["e", "123e4567-e89b-12d3-a456-426614174000", "i" * 128]) | clean_text(1, 20), "i" * 129
    ),
    "sent_at": field(st.sampled_from([None, "", *IN_WINDOW]), *OUT_OF_WINDOW_OR_NOT_TIMES),
    "url": field(
        st.sampled_from([None, "", "https://example.com/a?utm_source=x&utm_medium=y#f", "https://e.com/" + "a" * 2035])
        | web_urls(),
        "https://e.com/" + "a" * 2036,
        "ftp://example.com/",
        "javascript:alert(1)",
        "/path",
        "example.com/path",
        "http://",
        "http://[::1",
        "http://[zz]/",
        "https://example.com/\x00",
    ),
    "referrer": field(
        st.sampled_from([None, "", "https://news.ycombinator.com/item?id=1", "not a url", "r" * 2048])
        | web_urls()
        | clean_text(0, 20),
        "r" * 2049,
    ),
    "user_agent": field(
        st.sampled_from([None, "", CHROME, "Googlebot/2.1 (+http://www.google.com/bot.html)", "x" * 1024])
        | clean_text(0, 30),
        "x" * 1025,
    ),
    "ip": field(
        st.sampled_from([None, ""]) | st.ip_addresses().map(str),
        "999.1.1.1",
        "01.2.3.4",
        "81.2.69.160:443",
        "1" * 65,
    ),
    "props": (
        st.none() | valid_props,
        st.none()
        | valid_props
        | st.dictionaries(prop_keys, valid_prop_values | json_values, max_size=4)
        | st.dictionaries(clean_text(1, 6), st.integers(0, 9), min_size=31, max_size=33)
        | json_values,
    ),
    "other": field(json_values),
}
REQUIRED = ("site_id", "event_type", "timestamp")


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with some optional fields, then up to three fields (present or not) sent as anything."""
    present = draw(st.sets(st.sampled_from([name for name in FIELDS if name not in REQUIRED])))
    document = {name: draw(FIELDS[name][0]) for name in (*REQUIRED, *sorted(present))}
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=3, unique=True)):
        document[name] = draw(FIELDS[name][1])
    if draw(st.booleans()):
        document.pop(draw(st.sampled_from(REQUIRED)))
    return document


def outcome(read: Callable[[bytes], Any], raw: bytes) -> Any:
    """What `read` returns, or the InvalidInput it raised (anything else escapes and fails the test)."""
    try:
        return read(raw)
    except InvalidInput as invalid:
        return invalid


def listed(invalid: InvalidInput) -> None:
    """A 400 lists at least one problem, each on a field, none the catch-all."""
    assert invalid.errors
    assert all(error.path.startswith("body.") and error.path != "body." for error in invalid.errors)
    assert not {error.message for error in invalid.errors} & set(CATCH_ALL)


def accepted_and_usable(submission: Submission, document: dict[str, Any]) -> None:
    assert _problems(document, "body", RECEIVED_US) == []
    assert submission.body.site_id == document["site_id"]
    assert submission.body.event_type == document["event_type"]
    assert 0 <= submission.ts_us <= RECEIVED_US + 24 * 3600 * 1_000_000
    event = Enricher(no_country).event(submission, BROWSER, SALT)
    if isinstance(event, Event):
        assert decode_queued(encode_event(event)) == event
        assert len(event_key(event)) == 32


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_any_event_is_either_accepted_by_both_readers_or_every_problem_is_listed(generated: dict[str, Any]) -> None:
    raw = msgspec.json.encode(generated)
    document = msgspec.json.decode(raw)  # as the server reads it (an infinite float is sent as null)
    result = outcome(lambda raw: decode_event(raw, RECEIVED_US), raw)
    if isinstance(result, InvalidInput):
        listed(result)
        assert result.errors == _problems(document, "body", RECEIVED_US)
    else:
        accepted_and_usable(result, document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents(), min_size=1, max_size=3))
def test_any_batch_is_either_accepted_whole_or_every_problem_is_listed_by_index(generated: list[Any]) -> None:
    raw = msgspec.json.encode(generated)
    items = msgspec.json.decode(raw)
    result = outcome(lambda raw: decode_events(raw, RECEIVED_US, 3), raw)
    if isinstance(result, InvalidInput):
        listed(result)
        expected = [
            problem for index, item in enumerate(items) for problem in _problems(item, f"body.{index}", RECEIVED_US)
        ]
        assert result.errors == expected
    else:
        assert len(result) == len(items)
        for submission, document in zip(result, items, strict=True):
            accepted_and_usable(submission, document)


PLAUSIBLE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "n": st.sampled_from(["pageview", "engagement", "Signup", "", "x" * 65]) | json_values,
    "u": st.sampled_from(["https://example.com/a?utm_source=x#h", "ftp://x/", "/a", "", "http://"]) | json_values,
    "d": st.sampled_from(["example.com", "a.com,b.com", " , ", "d" * 257, "a\x00"]) | json_values,
    "r": FIELDS["referrer"][1],
    "p": FIELDS["props"][1] | st.sampled_from(['{"a": 1}', '{"a": {"b": 1}}', "[1]", "not json"]),
    "h": st.sampled_from([0, 1, True, None]),
    "name": st.sampled_from(["pageview", "Signup"]) | json_values,
    "url": st.sampled_from(["https://example.com/#/x"]) | json_values,
    "domain": st.sampled_from(["example.com"]) | json_values,
    "revenue": json_values,
}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=PLAUSIBLE_FIELDS))
def test_any_plausible_body_is_submissions_or_problems_on_its_own_fields(document: dict[str, Any]) -> None:
    result = outcome(lambda raw: decode_plausible(raw, RECEIVED_US), msgspec.json.encode(document))
    if isinstance(result, InvalidInput):
        listed(result)
    else:
        for submission in result:
            assert (submission.ts_us, submission.client_ts_us) == (RECEIVED_US, None)
            assert submission.body.event_type != "pageview"


readers = st.sampled_from(
    [
        lambda raw: decode_event(raw, RECEIVED_US),
        lambda raw: decode_events(raw, RECEIVED_US, 3),
        lambda raw: decode_plausible(raw, RECEIVED_US),
    ]
)
almost_json = st.builds(
    lambda document, cut: msgspec.json.encode(document)[:cut],
    documents() | st.lists(documents(), max_size=2),
    st.integers(),
)


@settings(max_examples=500, deadline=None)
@given(readers, st.binary(max_size=200) | almost_json)
def test_arbitrary_bytes_never_escape_as_anything_but_invalid_input(read: Callable[[bytes], Any], raw: bytes) -> None:
    result = outcome(read, raw)
    if isinstance(result, InvalidInput):
        assert result.errors
        assert all(error.path == "body" or error.path.startswith("body.") for error in result.errors)
