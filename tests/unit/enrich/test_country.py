"""Addresses to countries with the bundled GeoLite2 data, and a CDN's country header."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from analytics.config import ConfigError, load_settings
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


def test_an_operators_mmdb(tmp_path: Path) -> None:
    """A GeoLite2/GeoIP2 Country database of the operator's, written here with two networks."""
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True)
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "NZ"}})
    writer.insert_network(IPSet(["2001:db8::/32"]), {"registered_country": {"iso_code": "JP"}})
    path = tmp_path / "countries.mmdb"
    writer.to_db_file(str(path))
    lookup = country_lookup(str(path))
    assert [lookup(address) for address in ("203.0.113.9", "2001:db8::1", "8.8.8.8", "unknown")] == [
        "NZ",
        "JP",
        None,
        None,
    ]


def test_a_database_setting_that_is_no_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ANALYTICS_GEOIP_DATABASE"):
        load_settings({"ANALYTICS_GEOIP_DATABASE": str(tmp_path / "missing.mmdb")}, env_file=None)
    assert load_settings({"ANALYTICS_GEOIP_DATABASE": "NONE"}, env_file=None).geoip_database == "none"
