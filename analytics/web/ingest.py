"""The ingestion endpoints as bare ASGI apps: the hot path builds no Request or Response objects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from starlette.types import Receive, Scope, Send

from analytics.config import Settings
from analytics.enrich.country import country_from_header, country_lookup
from analytics.enrich.pipeline import Enricher, Requester
from analytics.errors import QueueFull, QueueUnavailable
from analytics.events.contract import FieldError, InvalidInput, Submission
from analytics.events.record import Event, encode_event, now_ms
from analytics.observability.metrics import Metrics
from analytics.queue.connection import Redis
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import PUSH_DEADLINE_S, Pusher
from analytics.queue.salts import DailySalts
from analytics.web.access import AccessRules, client_address
from analytics.web.asgi import RETRY_AFTER, Headers, encode, retry_after, send_json
from analytics.web.bodies import (
    BadGzip,
    BodyTooLarge,
    ClientGone,
    UnsupportedEncoding,
    content_encoding,
    gunzip,
    is_json,
    read_body,
    without_bom,
)
from analytics.web.responses import Fail, Invalid, Queued

QUEUED: Final = encode(Queued())

Answer = tuple[int, bytes, Headers]
Decode = Callable[[bytes, int], list[Submission]]


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What turns a submission into the queued Event: the enricher, the day's visitor salt, and the header a
    trusted CDN names the client's country in."""

    enricher: Enricher
    salts: DailySalts
    country_header: bytes | None = None

    @classmethod
    def from_settings(cls, settings: Settings, client: Redis, keys: QueueKeys) -> Enrichment:
        return cls(
            Enricher(country_lookup(settings.geoip_database)),
            DailySalts(client, keys),
            settings.country_header.encode() if settings.country_header else None,
        )


def queued_one(count: int) -> bytes:
    return QUEUED


def queued_count(count: int) -> bytes:
    return encode({"status": "queued", "count": count})


def _first_few(names: Sequence[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


class Ingest:
    """One ingestion endpoint. `decode` turns a body into Submissions (or raises `InvalidInput`); `accepted` renders
    the 202 body for n events. Checks run cheapest first: the client's rate limit before the body is read, the site
    checks after decoding (CORS, cheaper still, is `web.cors`'s, in front of this). Bots' events are answered 202
    like any other, so they do not retry, counted by reason, and dropped."""

    def __init__(
        self,
        pusher: Pusher,
        metrics: Metrics,
        max_body_bytes: int,
        rules: AccessRules,
        enrichment: Enrichment,
        decode: Decode,
        accepted: Callable[[int], bytes],
    ) -> None:
        self._pusher = pusher
        self._enrich = enrichment.enricher.event
        self._salts = enrichment.salts
        self._country_header = enrichment.country_header
        self._bots = metrics.bots
        self._decode = decode
        self._accepted = accepted
        self._max_body_bytes = max_body_bytes
        self._sites = rules.sites
        self._per_client = rules.per_client
        self._per_site = rules.per_site
        self._trusted_proxy_header = rules.trusted_proxy_header
        self._events_accepted = metrics.events_accepted
        self._rejected = metrics.rejected
        self._unavailable = metrics.unavailable.labels("redis")
        self._too_large = encode(Fail(status="fail", message=f"request body exceeds {max_body_bytes} bytes"))
        self._unsupported = encode(Fail(status="fail", message="Content-Type must be application/json or text/plain"))
        self._unsupported_encoding = encode(Fail(status="fail", message="Content-Encoding must be gzip or identity"))
        self._bad_gzip = encode(Invalid(errors=[FieldError("body", "body is not valid gzip")]))
        self._client_limited = encode(Fail(status="fail", message="too many requests from this client"))
        self._full = encode(Fail(status="error", message="queue is full, retry later"))
        self._down = encode(Fail(status="error", message="queue unavailable"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body, extra = await self._answer(scope, receive, dict(scope["headers"]))
        except ClientGone:
            return
        await send_json(send, status, body, extra)

    async def _answer(self, scope: Scope, receive: Receive, headers: dict[bytes, bytes]) -> Answer:
        if self._per_client is not None:
            wait_s = self._per_client.take(client_address(scope, headers, self._trusted_proxy_header))
            if wait_s:
                self._rejected["rate_limited"].inc()
                return 429, self._client_limited, [retry_after(wait_s)]
        if not is_json(headers.get(b"content-type")):
            self._rejected["unsupported_media_type"].inc()
            return 415, self._unsupported, ()
        try:
            encoding = content_encoding(headers)
            body = await read_body(headers, receive, self._max_body_bytes)
            if encoding == b"gzip":
                body = gunzip(body, self._max_body_bytes)
            submissions = self._decode(without_bom(body), time.time_ns() // 1000)
        except UnsupportedEncoding:
            self._rejected["unsupported_media_type"].inc()
            return 415, self._unsupported_encoding, ()
        except BodyTooLarge:
            self._rejected["too_large"].inc()
            return 413, self._too_large, ()
        except BadGzip:
            self._rejected["invalid"].inc()
            return 400, self._bad_gzip, ()
        except InvalidInput as invalid:
            self._rejected["invalid"].inc()
            return 400, encode(Invalid(errors=invalid.errors)), ()
        if self._sites is not None or self._per_site is not None:
            refusal = self._check_sites(submissions)
            if refusal is not None:
                return refusal
        try:
            events = await self._enriched(scope, headers, submissions)
        except QueueUnavailable:
            self._rejected["queue_unavailable"].inc()
            self._unavailable.inc()
            return 503, self._down, [RETRY_AFTER]
        if not events:
            return 202, self._accepted(len(submissions)), ()
        accepted_ms = now_ms()
        for event in events:
            event.accepted_ms = accepted_ms
        try:
            await self._pusher.push([encode_event(event) for event in events])
        except QueueFull:
            self._rejected["queue_full"].inc()
            return 503, self._full, [RETRY_AFTER]
        except QueueUnavailable:
            self._rejected["queue_unavailable"].inc()
            self._unavailable.inc()
            return 503, self._down, [RETRY_AFTER]
        self._events_accepted.inc(len(events))
        return 202, self._accepted(len(submissions)), ()

    async def _enriched(self, scope: Scope, headers: dict[bytes, bytes], submissions: list[Submission]) -> list[Event]:
        """The Events to queue; bots' submissions are counted and left out. Raises `QueueUnavailable` when the
        day's salt is needed from Redis and Redis does not answer within the push deadline."""
        salt = self._salts.cached()
        if salt is None:
            try:
                salt = await asyncio.wait_for(self._salts.today(), PUSH_DEADLINE_S)
            except TimeoutError:
                raise QueueUnavailable("no visitor salt from redis in time") from None
        country = None
        if self._country_header is not None:
            country = country_from_header(headers.get(self._country_header, b"").decode("latin-1"))
        requester = Requester(
            headers.get(b"user-agent", b"").decode("latin-1"),
            client_address(scope, headers, self._trusted_proxy_header),
            country,
        )
        events: list[Event] = []
        for submission in submissions:
            event = self._enrich(submission, requester, salt)
            if isinstance(event, str):
                self._bots[event].inc()
            else:
                events.append(event)
        return events

    def _check_sites(self, submissions: list[Submission]) -> Answer | None:
        """The allow-list, then the per-site budget; a batch passes whole or not at all."""
        events_per_site: dict[str, int] = {}
        for submission in submissions:
            site_id = submission.body.site_id
            events_per_site[site_id] = events_per_site.get(site_id, 0) + 1
        if self._sites is not None:
            unknown = [site for site in events_per_site if site not in self._sites]
            if unknown:
                self._rejected["forbidden"].inc()
                message = f"site_id not accepted here: {_first_few(sorted(unknown))}"
                return 403, encode(Fail(status="fail", message=message)), ()
        if self._per_site is not None:
            wait_s = self._per_site.take_all(events_per_site)
            if wait_s:
                self._rejected["rate_limited"].inc()
                message = f"too many events for site_id {_first_few(sorted(events_per_site))}"
                return 429, encode(Fail(status="fail", message=message)), [retry_after(wait_s)]
        return None
