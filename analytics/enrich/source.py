"""Where a visit came from: the page's path and campaign (UTM) parameters, and its referrer's source.

Both are cached: a site's events come from few landing URLs and referrers, and parsing a query string cost 6 us a
URL (bench/enrich.py), more than the rest of an event's enrichment.
"""

from __future__ import annotations

import functools
from typing import Final, NamedTuple
from urllib.parse import parse_qsl, urlsplit

UTM_KEYS: Final = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
Utm = tuple[str | None, str | None, str | None, str | None, str | None]
NO_UTM: Final[Utm] = (None, None, None, None, None)


class Page(NamedTuple):
    path: str | None
    host: str | None
    utm: Utm


class Referral(NamedTuple):
    """`referrer` is the referring URL without query or fragment (they often carry tokens); `source` its host without
    `www.`, or utm_source when the page has one. Both None for a link within the site, or no referrer."""

    referrer: str | None
    source: str | None


CACHE_SIZE: Final = 65_536
NO_PAGE: Final = Page(None, None, NO_UTM)
DIRECT: Final = Referral(None, None)


@functools.lru_cache(maxsize=CACHE_SIZE)
def page(url: str | None) -> Page:
    """The path (no query, no fragment), the host and the UTM parameters of a validated absolute URL."""
    if not url:
        return NO_PAGE
    parts = urlsplit(url)
    utm = NO_UTM
    if "utm_" in parts.query:
        found: dict[str, str] = {}
        for key, value in parse_qsl(parts.query):
            if key in UTM_KEYS and value and key not in found:
                found[key] = value[:256]
        utm = (
            found.get("utm_source"),
            found.get("utm_medium"),
            found.get("utm_campaign"),
            found.get("utm_term"),
            found.get("utm_content"),
        )
    return Page(parts.path or "/", _bare_host(parts.hostname), utm)


@functools.lru_cache(maxsize=CACHE_SIZE)
def referral(referrer: str | None, page_host: str | None, utm_source: str | None) -> Referral:
    host: str | None = None
    stripped: str | None = None
    if referrer:
        try:
            parts = urlsplit(referrer)
        except ValueError:
            parts = None
        if parts is not None and parts.hostname:
            host = _bare_host(parts.hostname)
            if host == page_host:
                host = None
            else:
                # no query, fragment or credentials: they often carry tokens
                server = parts.netloc.rpartition("@")[2]
                stripped = f"{parts.scheme}://{server}{parts.path}" if parts.scheme else None
    return Referral(stripped, utm_source or host)


def _bare_host(hostname: str | None) -> str | None:
    if not hostname:
        return None
    return hostname[4:] if hostname.startswith("www.") else hostname
