"""The ingestion endpoint's decision table, with a fake pusher and a fake ASGI server: every answer, its exact body
and headers, what was pushed, and which rejection counter moved."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

import pytest
from starlette.types import Message

from analytics.config import Settings
from analytics.enrich.country import no_country
from analytics.enrich.pipeline import Enricher
from analytics.errors import QueueFull, QueueUnavailable
from analytics.events.contract import Submission, decode_event, decode_events
from analytics.events.record import Event, decode_queued, now_ms
from analytics.observability.metrics import REJECTION_REASONS, Metrics
from analytics.queue.pusher import Pusher
from analytics.queue.salts import DailySalts
from analytics.web.access import AccessRules
from analytics.web.ingest import Decode, Enrichment, Ingest, queued_count, queued_one
from tests.helpers.factories import CHROME, SALT, event, v1_fields

TS_US = 1_762_975_801_000_000  # event()'s timestamp, 2025-11-12T19:30:01Z
JSON = (b"content-type", b"application/json")
REJECTED = "analytics_requests_rejected_total"
UNSUPPORTED_TYPE = "Content-Type must be application/json or text/plain"
UNSUPPORTED_ENCODING = "Content-Encoding must be gzip or identity"


def decode_one(body: bytes, received_us: int) -> list[Submission]:
    """/api/ingestion/event's decoder, as `web.app` builds it."""
    return [decode_event(body, received_us)]


class FakeSalts:
    """Today's salt, always at hand (the Redis side is tests/integration's)."""

    def cached(self) -> bytes:
        return SALT


class FakePusher:
    """Records what it was given, or raises `error` as the real pusher does when Redis refuses."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.pushes: list[list[bytes]] = []

    async def push(self, records: Sequence[bytes]) -> None:
        if self.error is not None:
            raise self.error
        self.pushes.append(list(records))


class Reply:
    def __init__(self, start: Message, body: Message) -> None:
        assert start["type"] == "http.response.start"
        assert body["type"] == "http.response.body"
        self.status: int = start["status"]
        self.headers: list[tuple[bytes, bytes]] = list(start["headers"])
        self.body: bytes = body["body"]

    def json(self) -> Any:
        return json.loads(self.body)


class Endpoint:
    """One Ingest app as `web.app` builds it, with the settings' access rules, a fresh registry and a fake pusher."""

    def __init__(
        self, settings: Settings | None = None, *, batch: bool = False, error: Exception | None = None
    ) -> None:
        self.settings = settings or Settings()
        self.pusher = FakePusher(error)
        self.metrics = Metrics()
        self.reads = 0
        decode: Decode = decode_one
        accepted = queued_one
        if batch:
            decode = partial(decode_events, max_events=self.settings.max_batch_events)
            accepted = queued_count
        self.app = Ingest(
            cast(Pusher, self.pusher),
            self.metrics,
            self.settings.max_body_bytes,
            AccessRules.from_settings(self.settings),
            Enrichment(Enricher(no_country), cast(DailySalts, FakeSalts())),
            decode,
            accepted,
        )

    async def post(
        self,
        body: bytes,
        headers: dict[bytes, bytes | None] | None = None,
        *,
        client: str = "203.0.113.7",
        gone: bool = False,
    ) -> Reply | None:
        """POST `body` with Content-Type JSON and its Content-Length, unless `headers` replace them (None: left out).

        Returns None if nothing was sent back.
        """
        sent_headers: dict[bytes, bytes | None] = {
            b"content-type": b"application/json",
            b"content-length": str(len(body)).encode(),
            b"user-agent": CHROME.encode(),
        }
        sent_headers.update(headers or {})
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/ingestion/event",
            "headers": [(name, value) for name, value in sent_headers.items() if value is not None],
            "client": (client, 50_000),
        }
        sent: list[Message] = []

        async def receive() -> Message:
            self.reads += 1
            if gone:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        if not sent:
            return None
        assert len(sent) == 2, sent
        return Reply(*sent)

    def rejections(self) -> dict[str, float]:
        """The rejection counters that moved."""
        counts = {reason: self.sample(REJECTED, reason=reason) for reason in REJECTION_REASONS}
        return {reason: count for reason, count in counts.items() if count}

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def queued(self) -> list[Event]:
        return [decode_queued(record) for push in self.pusher.pushes for record in push]


def body_of(*documents: dict[str, Any], batch: bool = False) -> bytes:
    return json.dumps(list(documents) if batch else documents[0]).encode()


def stored(**fields: Any) -> Event:
    """event(**fields) as it is queued, accepted_ms aside."""
    document = event(**fields)
    return Event(document["site_id"], document["event_type"], document["path"], document["user_id"], TS_US)


# 202


async def test_one_event_is_pushed_stamped_and_answered_202() -> None:
    endpoint = Endpoint()
    before = now_ms()
    reply = await endpoint.post(body_of(event()))
    after = now_ms()

    assert reply is not None
    assert (reply.status, reply.body) == (202, b'{"status":"queued"}')
    assert reply.headers == [JSON, (b"content-length", b"19")]
    [pushed] = endpoint.pusher.pushes
    [queued] = [decode_queued(record) for record in pushed]
    assert before <= queued.accepted_ms <= after
    queued.accepted_ms = 0
    assert v1_fields(queued) == v1_fields(stored())
    assert endpoint.sample("analytics_events_accepted_total") == 1
    assert endpoint.rejections() == {}


async def test_a_batch_is_pushed_at_once_in_order_with_one_accepted_ms() -> None:
    endpoint = Endpoint(batch=True)
    documents = [event(path=f"/{number}") for number in range(3)]
    reply = await endpoint.post(body_of(*documents, batch=True))

    assert reply is not None
    assert (reply.status, reply.body) == (202, b'{"status":"queued","count":3}')
    assert len(endpoint.pusher.pushes) == 1
    queued = endpoint.queued()
    assert [event.path for event in queued] == ["/0", "/1", "/2"]
    assert len({event.accepted_ms for event in queued}) == 1
    assert queued[0].accepted_ms > 0
    assert endpoint.sample("analytics_events_accepted_total") == 3


@pytest.mark.parametrize(
    ("headers", "encode"),
    [
        ({b"content-type": b"text/plain;charset=UTF-8"}, lambda body: body),
        ({b"content-type": None}, lambda body: body),
        ({b"content-encoding": b"gzip"}, gzip.compress),
        ({b"content-encoding": b"GZIP"}, lambda body: gzip.compress(b"\xef\xbb\xbf" + body)),
        ({b"content-encoding": b"identity"}, lambda body: b"\xef\xbb\xbf" + body),
    ],
    ids=["sendBeacon-text", "no-content-type", "gzip", "gzip-with-bom", "bom"],
)
async def test_accepted_forms_of_one_body(headers: dict[bytes, bytes | None], encode: Callable[[bytes], bytes]) -> None:
    endpoint = Endpoint()
    reply = await endpoint.post(encode(body_of(event())), headers)
    assert reply is not None
    assert reply.status == 202, reply.body
    [queued] = endpoint.queued()
    queued.accepted_ms = 0
    assert v1_fields(queued) == v1_fields(stored())


# 400, 413, 415


async def test_an_invalid_event_is_400_with_every_problem_and_nothing_pushed() -> None:
    endpoint = Endpoint()
    reply = await endpoint.post(body_of(event(site_id=None, timestamp="soon")))
    assert reply is not None
    assert reply.status == 400
    assert reply.json() == {
        "status": "fail",
        "errors": [
            {"path": "body.site_id", "message": "site_id is required"},
            {"path": "body.timestamp", "message": "timestamp must be an ISO 8601 date-time, e.g. 2025-11-12T19:30:01Z"},
        ],
    }
    assert endpoint.pusher.pushes == []
    assert endpoint.rejections() == {"invalid": 1}


async def test_a_batch_with_one_invalid_event_pushes_nothing() -> None:
    endpoint = Endpoint(batch=True)
    reply = await endpoint.post(body_of(event(), event(user_id=7), batch=True))
    assert reply is not None
    assert reply.status == 400
    assert reply.json()["errors"] == [{"path": "body.1.user_id", "message": "user_id must be a string"}]
    assert endpoint.pusher.pushes == []


TOO_LARGE = {"status": "fail", "message": "request body exceeds 200 bytes"}


@pytest.mark.parametrize(
    ("headers", "reads"),
    [({}, 0), ({b"content-length": None}, 1)],
    ids=["declared-length-refused-unread", "streamed-then-refused"],
)
async def test_a_body_over_the_limit_is_413(headers: dict[bytes, bytes | None], reads: int) -> None:
    endpoint = Endpoint(Settings(max_body_bytes=200))
    reply = await endpoint.post(b"x" * 201, headers)
    assert reply is not None
    assert (reply.status, reply.json()) == (413, TOO_LARGE)
    assert endpoint.reads == reads
    assert endpoint.pusher.pushes == []
    assert endpoint.rejections() == {"too_large": 1}


async def test_a_gzip_body_that_inflates_past_the_limit_is_413() -> None:
    body = gzip.compress(body_of(event(path="/" + "p" * 300)))
    assert len(body) < 200
    endpoint = Endpoint(Settings(max_body_bytes=200))
    reply = await endpoint.post(body, {b"content-encoding": b"gzip"})
    assert reply is not None
    assert (reply.status, reply.json()) == (413, TOO_LARGE)
    assert endpoint.rejections() == {"too_large": 1}


async def test_a_body_exactly_at_the_limit_is_read() -> None:
    body = body_of(event())
    endpoint = Endpoint(Settings(max_body_bytes=len(body)))
    reply = await endpoint.post(body)
    assert reply is not None
    assert reply.status == 202


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({b"content-type": b"application/x-www-form-urlencoded"}, UNSUPPORTED_TYPE),
        ({b"content-type": b"text/html"}, UNSUPPORTED_TYPE),
        ({b"content-encoding": b"br"}, UNSUPPORTED_ENCODING),
        ({b"content-encoding": b"deflate"}, UNSUPPORTED_ENCODING),
    ],
)
async def test_unsupported_media_is_415_before_the_body_is_read(
    headers: dict[bytes, bytes | None], message: str
) -> None:
    endpoint = Endpoint()
    reply = await endpoint.post(body_of(event()), headers)
    assert reply is not None
    assert (reply.status, reply.json()) == (415, {"status": "fail", "message": message})
    assert endpoint.reads == 0
    assert endpoint.pusher.pushes == []
    assert endpoint.rejections() == {"unsupported_media_type": 1}


@pytest.mark.parametrize(
    "body",
    [body_of(event()), gzip.compress(body_of(event()))[:-3], gzip.compress(body_of(event())) + b"trailing"],
    ids=["not-gzip", "truncated", "trailing-garbage"],
)
async def test_bad_gzip_is_400_on_the_body(body: bytes) -> None:
    endpoint = Endpoint()
    reply = await endpoint.post(body, {b"content-encoding": b"gzip"})
    assert reply is not None
    assert reply.status == 400
    assert reply.json() == {"status": "fail", "errors": [{"path": "body", "message": "body is not valid gzip"}]}
    assert endpoint.pusher.pushes == []
    assert endpoint.rejections() == {"invalid": 1}


# 403, 429


async def test_a_site_not_in_the_allow_list_is_403_and_nothing_is_pushed() -> None:
    endpoint = Endpoint(Settings(sites=("site-abc-123",)))
    reply = await endpoint.post(body_of(event(site_id="elsewhere")))
    assert reply is not None
    assert (reply.status, reply.json()) == (403, {"status": "fail", "message": "site_id not accepted here: elsewhere"})
    assert endpoint.pusher.pushes == []
    assert endpoint.rejections() == {"forbidden": 1}

    allowed = await endpoint.post(body_of(event()))
    assert allowed is not None
    assert allowed.status == 202


async def test_one_unknown_site_refuses_the_whole_batch_and_names_the_first_few() -> None:
    endpoint = Endpoint(Settings(sites=("site-abc-123",)), batch=True)
    documents = [event(), *[event(site_id=f"x{number}") for number in range(5, 0, -1)]]
    reply = await endpoint.post(body_of(*documents, batch=True))
    assert reply is not None
    assert reply.status == 403
    assert reply.json()["message"] == "site_id not accepted here: x1, x2, x3 and 2 more"
    assert endpoint.pusher.pushes == []


async def test_a_client_over_its_rate_is_429_with_retry_after_before_its_body_is_read() -> None:
    endpoint = Endpoint(Settings(rate_limit_ip=0.5, rate_limit_ip_burst=1))
    first = await endpoint.post(body_of(event()), client="198.51.100.1")
    assert first is not None
    assert first.status == 202
    reads = endpoint.reads

    limited = await endpoint.post(body_of(event()), client="198.51.100.1")
    assert limited is not None
    assert limited.status == 429
    assert limited.json() == {"status": "fail", "message": "too many requests from this client"}
    assert (b"retry-after", b"2") in limited.headers  # one token per 2 s: the bucket is full again in 2 s
    assert endpoint.reads == reads
    assert len(endpoint.pusher.pushes) == 1
    assert endpoint.rejections() == {"rate_limited": 1}

    other = await endpoint.post(body_of(event()), client="198.51.100.2")
    assert other is not None
    assert other.status == 202


async def test_behind_a_trusted_proxy_the_client_is_the_last_forwarded_address() -> None:
    endpoint = Endpoint(Settings(rate_limit_ip=0.5, rate_limit_ip_burst=1, trusted_proxy_header="x-forwarded-for"))
    statuses = []
    for forwarded in (b"10.0.0.1, 192.0.2.1", b"10.0.0.1, 192.0.2.2", b"10.0.0.9, 192.0.2.1"):
        reply = await endpoint.post(body_of(event()), {b"x-forwarded-for": forwarded}, client="127.0.0.1")
        assert reply is not None
        statuses.append(reply.status)
    assert statuses == [202, 202, 429]


async def test_a_site_over_its_budget_is_429_and_the_batch_is_all_or_nothing() -> None:
    endpoint = Endpoint(Settings(rate_limit_site=1, rate_limit_site_burst=5), batch=True)
    first = await endpoint.post(body_of(*[event(site_id="a")] * 3, batch=True))
    assert first is not None
    assert first.status == 202

    limited = await endpoint.post(body_of(*[event(site_id="a")] * 3, batch=True))
    assert limited is not None
    assert (limited.status, limited.json()) == (429, {"status": "fail", "message": "too many events for site_id a"})
    assert (b"retry-after", b"1") in limited.headers
    assert endpoint.rejections() == {"rate_limited": 1}

    # "b" would fit, "a" would not: nothing is taken from "b" either, so 5 of "b" still pass afterwards.
    mixed = await endpoint.post(body_of(event(site_id="b"), *[event(site_id="a")] * 3, batch=True))
    assert mixed is not None
    assert mixed.status == 429
    rest = await endpoint.post(body_of(*[event(site_id="b")] * 5, batch=True))
    assert rest is not None
    assert rest.status == 202
    assert [len(push) for push in endpoint.pusher.pushes] == [3, 5]


async def test_a_batch_larger_than_the_burst_waits_for_its_whole_cost() -> None:
    endpoint = Endpoint(Settings(rate_limit_site=2, rate_limit_site_burst=5), batch=True)
    reply = await endpoint.post(body_of(*[event()] * 7, batch=True))
    assert reply is not None
    assert reply.status == 429
    assert (b"retry-after", b"4") in reply.headers  # ceil(7 / 2)


# 503, and no one to answer


@pytest.mark.parametrize(
    ("error", "message", "reason"),
    [
        (QueueFull(), "queue is full, retry later", "queue_full"),
        (QueueUnavailable("down"), "queue unavailable", "queue_unavailable"),
    ],
)
async def test_a_queue_that_refuses_is_503_retry_after_one_second(error: Exception, message: str, reason: str) -> None:
    endpoint = Endpoint(error=error)
    reply = await endpoint.post(body_of(event()))
    assert reply is not None
    assert (reply.status, reply.json()) == (503, {"status": "error", "message": message})
    assert (b"retry-after", b"1") in reply.headers
    assert endpoint.rejections() == {reason: 1}
    assert endpoint.sample("analytics_events_accepted_total") == 0
    redis_down = 1 if reason == "queue_unavailable" else 0
    assert endpoint.sample("analytics_unavailable_responses_total", dependency="redis") == redis_down


async def test_a_client_that_disconnects_gets_no_answer_and_nothing_is_pushed() -> None:
    endpoint = Endpoint()
    assert await endpoint.post(body_of(event()), gone=True) is None
    assert endpoint.reads == 1
    assert endpoint.pusher.pushes == []
    assert endpoint.rejections() == {}
