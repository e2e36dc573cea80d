"""The CORS wrapper around an endpoint, with a fake inner app: requests without an Origin pass untouched, an allowed
origin's answer gains the headers, a refused origin is answered 403 before the endpoint runs; preflights."""

from __future__ import annotations

import json

import pytest
from starlette.types import Message, Receive, Scope, Send

from analytics.web.cors import CORS_MAX_AGE_S, Cors, CorsPolicy

INNER_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]
REFUSED = {"status": "fail", "message": "origin not allowed"}


class Inner:
    """An endpoint that answers 202 `{}` and remembers what it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[Scope, Receive, Send]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append((scope, receive, send))
        await send({"type": "http.response.start", "status": 202, "headers": list(INNER_HEADERS)})
        await send({"type": "http.response.body", "body": b"{}"})


class Wrapped:
    def __init__(self, origins: list[str]) -> None:
        self.inner = Inner()
        self.refusals = 0
        self.cors = Cors(CorsPolicy(origins, methods="POST", request_headers="content-type"), self.inner, self.refuse)
        self.sent: list[Message] = []

    def refuse(self) -> None:
        self.refusals += 1

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def receive(self) -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def request(self, origin: bytes | None) -> Scope:
        headers = [(b"content-type", b"application/json")]
        if origin is not None:
            headers.append((b"origin", origin))
        scope = {"type": "http", "method": "POST", "path": "/x", "headers": headers}
        await self.cors(scope, self.receive, self.send)
        return scope

    async def preflight(self, origin: bytes) -> None:
        await self.cors.preflight(origin, self.send)

    @property
    def status(self) -> int:
        status: int = self.sent[0]["status"]
        return status

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.sent[0]["headers"])


async def test_without_an_origin_the_request_passes_untouched() -> None:
    """Servers and curl send no Origin: the endpoint gets the very scope, receive and send, and answers itself."""
    wrapped = Wrapped(["https://a.example"])
    scope = await wrapped.request(None)
    [(got_scope, got_receive, got_send)] = wrapped.inner.calls
    assert got_scope is scope
    assert got_receive == wrapped.receive
    assert got_send == wrapped.send
    assert wrapped.headers == INNER_HEADERS
    assert wrapped.refusals == 0


@pytest.mark.parametrize(
    ("origins", "added"),
    [
        (["https://a.example"], [(b"access-control-allow-origin", b"https://a.example"), (b"vary", b"origin")]),
        (["*"], [(b"access-control-allow-origin", b"*")]),
    ],
)
async def test_an_allowed_origin_gets_the_headers_on_the_endpoints_answer(
    origins: list[str], added: list[tuple[bytes, bytes]]
) -> None:
    wrapped = Wrapped(origins)
    await wrapped.request(b"https://a.example")
    assert len(wrapped.inner.calls) == 1
    assert wrapped.status == 202
    assert wrapped.headers == [*INNER_HEADERS, *added]
    assert wrapped.sent[1] == {"type": "http.response.body", "body": b"{}"}, "the body is not touched"


@pytest.mark.parametrize("origins", [["https://a.example"], []], ids=["listed", "none"])
async def test_a_refused_origin_is_403_and_the_endpoint_never_runs(origins: list[str]) -> None:
    wrapped = Wrapped(origins)
    await wrapped.request(b"https://evil.example")
    assert wrapped.inner.calls == []
    assert wrapped.status == 403
    assert (b"content-type", b"application/json") in wrapped.headers
    assert not any(name.startswith(b"access-control-") for name, _ in wrapped.headers)
    assert json.loads(wrapped.sent[1]["body"]) == REFUSED
    assert wrapped.refusals == 1


async def test_origins_match_exactly() -> None:
    """No prefix, suffix, case or trailing-slash games: the Origin is compared byte for byte."""
    for origin in (
        b"https://a.example.evil",
        b"https://A.example",
        b"https://a.example/",
        b"http://a.example",
        b"null",
    ):
        wrapped = Wrapped(["https://a.example"])
        await wrapped.request(origin)
        assert wrapped.status == 403, origin


@pytest.mark.parametrize(
    ("origins", "allow_origin"),
    [
        (["https://a.example"], [(b"access-control-allow-origin", b"https://a.example"), (b"vary", b"origin")]),
        (["*"], [(b"access-control-allow-origin", b"*")]),
    ],
)
async def test_an_allowed_preflight_is_204_with_what_the_browser_may_send(
    origins: list[str], allow_origin: list[tuple[bytes, bytes]]
) -> None:
    wrapped = Wrapped(origins)
    await wrapped.preflight(b"https://a.example")
    assert wrapped.status == 204
    assert wrapped.headers == [
        *allow_origin,
        (b"access-control-allow-methods", b"POST"),
        (b"access-control-allow-headers", b"content-type"),
        (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()),
    ]
    assert wrapped.sent[1] == {"type": "http.response.body", "body": b""}
    assert wrapped.inner.calls == []
    assert wrapped.refusals == 0


async def test_a_refused_preflight_is_403() -> None:
    wrapped = Wrapped(["https://a.example"])
    await wrapped.preflight(b"https://evil.example")
    assert wrapped.status == 403
    assert json.loads(wrapped.sent[1]["body"]) == REFUSED
    assert wrapped.refusals == 1


async def test_refusals_need_no_counter() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    cors = Cors(CorsPolicy([], methods="GET", request_headers="authorization"), Inner())
    await cors.preflight(b"https://a.example", send)
    assert sent[0]["status"] == 403
