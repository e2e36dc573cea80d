"""Addresses to countries with the bundled GeoLite2 data, and a CDN's country header."""

from __future__ import annotations

import pytest

from analytics.enrich.country import country_from_header, country_lookup, no_country


@pytest.mark.parametrize(
    ("address", "country"),
    [
        ("8.8.8.8", "US"),
        ("81.2.69.160", "GB"),
        ("200.147.67.142", "BR"),
        ("41.0.0.1", "ZA"),
        ("2a00:1450:4001:81b::200e", "DE"),
        ("127.0.0.1", None),
        ("10.1.2.3", None),
        ("::1", None),
        ("unknown", None),
    ],
)
def test_the_bundled_database(address: str, country: str | None) -> None:
    assert country_lookup("bundled")(address) == country


def test_the_database_is_loaded_once_per_process() -> None:
    assert country_lookup("bundled") is country_lookup("bundled")


def test_none_looks_nothing_up() -> None:
    assert country_lookup("none") is no_country
    assert no_country("8.8.8.8") is None


@pytest.mark.parametrize(
    ("value", "country"),
    [("DE", "DE"), ("de", "DE"), (" fr ", "FR"), ("XX", None), ("T1", None), ("", None), ("GBR", None), (None, None)],
)
def test_a_cdn_header(value: str | None, country: str | None) -> None:
    assert country_from_header(value) == country
