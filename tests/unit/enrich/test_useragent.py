"""User-Agents as real browsers and bots send them, and what the service makes of each."""

from __future__ import annotations

import pytest

from analytics.enrich.useragent import Agent, describe

REAL_WORLD = {
    "desktop Chrome": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
        "Safari/537.36",
        Agent("Chrome", "131", "Windows", "10", "desktop"),
    ),
    "Firefox on Ubuntu": (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        Agent("Firefox", "133", "Ubuntu", None, "desktop"),
    ),
    "Safari on a Mac": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
        "Safari/605.1.15",
        Agent("Safari", "17", "Mac OS X", "10.15", "desktop"),
    ),
    "Safari on iPhone": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1",
        Agent("Mobile Safari", "17", "iOS", "17.5", "mobile"),
    ),
    "Safari on iPad": (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
        "Mobile/15E148 Safari/604.1",
        Agent("Mobile Safari", "17", "iOS", "17.5", "tablet"),
    ),
    "Chrome on an Android phone": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.104 "
        "Mobile Safari/537.36",
        Agent("Chrome Mobile", "131", "Android", "14", "mobile"),
    ),
    "Chrome on an Android tablet": (
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
        "Safari/537.36",
        Agent("Chrome", "131", "Android", "13", "tablet"),
    ),
    "Edge": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
        "Safari/537.36 Edg/131.0.2903.70",
        Agent("Edge", "131", "Windows", "10", "desktop"),
    ),
    "Googlebot": (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        Agent("Googlebot", "2", None, None, None, bot="crawler"),
    ),
    "Googlebot smartphone": (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.139 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        Agent("Googlebot", "2", "Android", "6.0", "mobile", bot="crawler"),
    ),
    "bingbot": (
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        Agent("bingbot", "2", None, None, None, bot="crawler"),
    ),
    "headless Chrome": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
        Agent("HeadlessChrome", "131", "Linux", None, "desktop", bot="headless"),
    ),
    # A server relaying events (the v1 contract's own curl examples): counted, with no browser device.
    "curl": ("curl/8.5.0", Agent("curl", "8", None, None, None)),
    "python-httpx": ("python-httpx/0.28.1", Agent()),
}


@pytest.mark.parametrize("name", REAL_WORLD)
def test_real_world_user_agents(name: str) -> None:
    user_agent, expected = REAL_WORLD[name]
    assert describe(user_agent) == expected


@pytest.mark.parametrize("user_agent", ["", " ", "\t"])
def test_an_empty_user_agent_is_a_bot(user_agent: str) -> None:
    assert describe(user_agent).bot == "empty"


def test_answers_are_cached() -> None:
    describe.cache_clear()
    user_agent, _ = REAL_WORLD["desktop Chrome"]
    describe(user_agent)
    describe(str(user_agent))
    assert describe.cache_info().hits >= 1
