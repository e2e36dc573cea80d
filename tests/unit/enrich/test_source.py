"""Page URLs and referrers into paths, campaigns and sources."""

from __future__ import annotations

import pytest

from analytics.enrich.source import DIRECT, NO_PAGE, Page, Referral, page, referral


def test_a_page_gives_its_path_host_and_campaign() -> None:
    landing = page(
        "https://www.example.com/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=launch"
        "&utm_term=analytics&utm_content=hero&other=1#plans"
    )
    assert landing == Page("/pricing", "example.com", ("newsletter", "email", "launch", "analytics", "hero"))


@pytest.mark.parametrize(
    ("url", "path"),
    [("https://example.com", "/"), ("https://example.com/a/b/?q=1", "/a/b/"), ("http://example.com:8080/x#y", "/x")],
)
def test_the_path_has_no_query_or_fragment(url: str, path: str) -> None:
    assert page(url).path == path


def test_only_the_first_non_empty_utm_value_counts() -> None:
    assert page("https://example.com/?utm_source=&utm_source=a&utm_source=b").utm[0] == "a"


def test_no_url_is_no_page() -> None:
    assert page(None) == NO_PAGE


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        (
            "https://news.ycombinator.com/item?id=1",
            Referral("https://news.ycombinator.com/item", "news.ycombinator.com"),
        ),
        ("https://www.google.com/", Referral("https://www.google.com/", "google.com")),
        ("https://example.com/other-page", DIRECT),  # the page's own host: a link within the site
        ("https://www.example.com/", DIRECT),
        ("", DIRECT),
        (None, DIRECT),
        ("not a url", DIRECT),
        ("http://[::1", DIRECT),
        ("https://user:pw@partner.example/a?t=1", Referral("https://partner.example/a", "partner.example")),
    ],
)
def test_referrers_become_sources(referrer: str | None, expected: Referral) -> None:
    assert referral(referrer, "example.com", None) == expected


def test_utm_source_wins_over_the_referrer() -> None:
    assert referral("https://t.co/abc", "example.com", "twitter-ad").source == "twitter-ad"
    assert referral(None, "example.com", "newsletter") == Referral(None, "newsletter")


def test_without_a_page_url_any_referrer_host_is_a_source() -> None:
    assert referral("https://example.com/", None, None).source == "example.com"
