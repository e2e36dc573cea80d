"""The cookieless visitor id: stable within a day's salt, different across salts, sites, addresses and browsers."""

from __future__ import annotations

from analytics.enrich.visitor import VISITOR_HEX_DIGITS, visitor_id

MONDAY, TUESDAY = b"m" * 32, b"t" * 32
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def test_the_same_visitor_on_the_same_day_is_one_id() -> None:
    assert visitor_id(MONDAY, "s", "203.0.113.9", UA) == visitor_id(MONDAY, "s", "203.0.113.9", UA)


def test_ids_differ_by_day_site_address_and_user_agent() -> None:
    ids = {
        visitor_id(MONDAY, "s", "203.0.113.9", UA),
        visitor_id(TUESDAY, "s", "203.0.113.9", UA),
        visitor_id(MONDAY, "other", "203.0.113.9", UA),
        visitor_id(MONDAY, "s", "203.0.113.10", UA),
        visitor_id(MONDAY, "s", "203.0.113.9", UA + " extra"),
    }
    assert len(ids) == 5


def test_the_id_is_64_bits_of_hex() -> None:
    visitor = visitor_id(MONDAY, "s", "203.0.113.9", UA)
    assert len(visitor) == VISITOR_HEX_DIGITS
    assert int(visitor, 16) < 2**64
