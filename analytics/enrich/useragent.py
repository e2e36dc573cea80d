"""User-Agent → browser, OS and device class, and whether it is a bot, by uap-core's rules (the `ua-parser`
library with its native `ua-parser-rs` matcher and the `ua-parser-builtins` rules).

Chosen by measurement (bench/enrich.py, bench/RESULTS.md): 19 us a new string and a dictionary lookup after that;
`device-detector` (Matomo's rules, what Plausible uses) classifies more finely but took 9.5 ms a string, and
`crawlerdetect` took 220 us and calls every HTTP library a crawler, which would drop the v1 contract's own curl
examples.
"""

from __future__ import annotations

import functools
from typing import Final, NamedTuple

import ua_parser

CACHE_SIZE: Final = 20_000

# Operating systems of phones and tablets; anything else a browser runs on is a desktop.
HANDHELD_OSES: Final = frozenset(
    {"iOS", "iPadOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "Symbian OS", "HarmonyOS"}
)
HEADLESS_BROWSERS: Final = frozenset({"HeadlessChrome", "PhantomJS"})


class Agent(NamedTuple):
    """What a User-Agent says. `bot` is the reason to drop the event (`empty`, `crawler`, `headless`), or None."""

    browser: str | None = None
    browser_version: str | None = None
    os: str | None = None
    os_version: str | None = None
    device: str | None = None
    bot: str | None = None


EMPTY: Final = Agent(bot="empty")


@functools.lru_cache(maxsize=CACHE_SIZE)
def describe(user_agent: str) -> Agent:
    """Cached: a site's visitors share a few hundred User-Agents, so nearly every call is a lookup."""
    if not user_agent.strip():
        return EMPTY
    parsed = ua_parser.parse(user_agent)
    client, system, device = parsed.user_agent, parsed.os, parsed.device
    browser = client.family if client is not None and client.family != "Other" else None
    os_name = system.family if system is not None and system.family != "Other" else None
    if device is not None and device.family == "Spider":
        bot: str | None = "crawler"
    elif browser in HEADLESS_BROWSERS:
        bot = "headless"
    else:
        bot = None
    return Agent(
        browser=browser,
        browser_version=client.major if browser is not None and client is not None else None,
        os=os_name,
        os_version=_version(system.major, system.minor) if os_name is not None and system is not None else None,
        device=_device_class(user_agent, os_name, device.family if device is not None else None, browser),
        bot=bot,
    )


def _version(major: str | None, minor: str | None) -> str | None:
    if major is None:
        return None
    return f"{major}.{minor}" if minor else major


def _device_class(user_agent: str, os_name: str | None, device_family: str | None, browser: str | None) -> str | None:
    """Desktop, mobile or tablet. Android tablets are told from phones by the `Mobile` token that Android phones'
    browsers send and tablets' do not (Google's documented convention); an HTTP library is no device at all."""
    if os_name in HANDHELD_OSES:
        if device_family == "iPad" or "Tablet" in user_agent:
            return "tablet"
        if os_name == "Android" and "Mobile" not in user_agent:
            return "tablet"
        return "mobile"
    if os_name is None or browser is None:
        return None
    return "desktop"
