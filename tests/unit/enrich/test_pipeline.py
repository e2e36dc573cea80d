"""A submission and its request, enriched into the queued Event: what comes from where, and what never leaves."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from analytics.enrich.country import country_lookup
from analytics.enrich.pipeline import Enricher, Requester
from analytics.enrich.visitor import visitor_id
from analytics.events.contract import decode_event
from analytics.events.record import Event, encode_event
from tests.helpers.factories import CHROME, RECEIVED_US, SALT

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
ADDRESS = "81.2.69.160"  # GB in the bundled database
BROWSER = Requester(CHROME, ADDRESS, None)


def enrich(requester: Requester = BROWSER, **fields: Any) -> Event | str:
    document = {"site_id": "s", "event_type": "page_view", "timestamp": "2026-12-01T10:00:00Z", **fields}
    submission = decode_event(json.dumps(document).encode(), RECEIVED_US)
    return Enricher(country_lookup("bundled")).event(submission, requester, SALT)


def test_a_browser_page_view_is_enriched_from_its_request_and_body() -> None:
    event = enrich(
        url="https://www.example.com/pricing?utm_source=newsletter&utm_campaign=launch",
        referrer="https://news.ycombinator.com/item?id=1",
        props={"plan": "pro", "seats": 3, "trial": True},
        event_id="e-1",
    )
    assert isinstance(event, Event)
    assert (event.path, event.event_id, event.user_id) == ("/pricing", "e-1", None)
    assert (event.source, event.referrer) == ("newsletter", "https://news.ycombinator.com/item")
    assert (event.utm_source, event.utm_medium, event.utm_campaign) == ("newsletter", None, "launch")
    assert (event.browser, event.browser_version, event.os, event.os_version, event.device) == (
        "Chrome",
        "131",
        "Windows",
        "10",
        "desktop",
    )
    assert event.country == "GB"
    assert event.visitor == visitor_id(SALT, "s", ADDRESS, CHROME)
    assert json.loads(event.props or "") == {"plan": "pro", "seats": 3, "trial": True}


def test_the_client_address_is_never_in_the_queued_record() -> None:
    event = enrich(ip="198.51.100.23")
    assert isinstance(event, Event)
    record = encode_event(event)
    assert b"198.51.100.23" not in record
    assert ADDRESS.encode() not in record
    assert "198.51.100.23" not in repr(msgspec.msgpack.decode(record))


def test_an_explicit_path_wins_over_the_url() -> None:
    event = enrich(url="https://example.com/from-url", path="/given")
    assert isinstance(event, Event)
    assert event.path == "/given"


def test_a_user_id_is_the_visitor() -> None:
    event = enrich(user_id="u-7")
    assert isinstance(event, Event)
    assert event.visitor == "u-7"


def test_relay_fields_stand_in_for_the_request() -> None:
    server = Requester("python-requests/2.31.0", "10.0.0.5", None)
    event = enrich(server, user_agent=IPHONE, ip="8.8.8.8")
    assert isinstance(event, Event)
    assert (event.browser, event.device, event.country) == ("Mobile Safari", "mobile", "US")
    assert event.visitor == visitor_id(SALT, "s", "8.8.8.8", IPHONE)


def test_a_cdn_country_describes_the_request_not_a_relayed_address() -> None:
    behind_cdn = Requester(CHROME, ADDRESS, "DE")
    direct = enrich(behind_cdn)
    relayed = enrich(behind_cdn, ip="8.8.8.8")
    assert isinstance(direct, Event)
    assert isinstance(relayed, Event)
    assert (direct.country, relayed.country) == ("DE", "US")


def test_bots_are_reasons_not_events() -> None:
    assert enrich(Requester(GOOGLEBOT, ADDRESS, None)) == "crawler"
    assert enrich(Requester("", ADDRESS, None)) == "empty"
    assert enrich(user_agent=GOOGLEBOT) == "crawler"  # a relayed bot is a bot too


def test_empty_props_are_none() -> None:
    event = enrich(props={})
    assert isinstance(event, Event)
    assert event.props is None
