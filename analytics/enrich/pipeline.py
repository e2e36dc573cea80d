"""A valid submission and the request that carried it, turned into the Event that is queued: or the reason it is
a bot's, which is answered 202 and dropped. The client's address is used here and nowhere after."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from analytics.enrich.country import CountryLookup
from analytics.enrich.source import page, referral
from analytics.enrich.useragent import describe
from analytics.enrich.visitor import visitor_id
from analytics.events.contract import Submission
from analytics.events.record import Event

_encode_json = msgspec.json.Encoder().encode


class Requester(NamedTuple):
    """What the request itself says of its sender: the User-Agent header, the client address, and the country a
    trusted CDN header names (None when not configured or not sent)."""

    user_agent: str
    address: str
    country: str | None


class Enricher:
    def __init__(self, countries: CountryLookup) -> None:
        self._countries = countries

    def event(self, submission: Submission, requester: Requester, salt: bytes) -> Event | str:
        """The Event to queue, or the bot reason (`empty`, `crawler`, `headless`) to drop it for.

        A relayed `user_agent` / `ip` stands in for the request's own; a CDN's country header describes the
        request's address, so a relayed ip is looked up instead.
        """
        body = submission.body
        user_agent = body.user_agent or requester.user_agent
        agent = describe(user_agent)
        if agent.bot is not None:
            return agent.bot
        if body.ip:
            address, country = body.ip, self._countries(body.ip)
        else:
            address, country = requester.address, requester.country or self._countries(requester.address)
        landing = page(body.url)
        came_from = referral(body.referrer, landing.host, landing.utm[0])
        user_id = body.user_id or None
        utm_source, utm_medium, utm_campaign, utm_term, utm_content = landing.utm
        return Event(
            body.site_id,
            body.event_type,
            body.path or landing.path,
            user_id,
            submission.ts_us,
            0,
            submission.client_ts_us,
            body.event_id,
            user_id or visitor_id(salt, body.site_id, address, user_agent),
            came_from.referrer,
            came_from.source,
            utm_source,
            utm_medium,
            utm_campaign,
            utm_term,
            utm_content,
            agent.browser,
            agent.browser_version,
            agent.os,
            agent.os_version,
            agent.device,
            country,
            _encode_json(body.props).decode() if body.props else None,
        )
