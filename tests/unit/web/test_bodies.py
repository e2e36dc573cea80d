"""Request bodies under a size limit: refused as early as possible, gzip inflated within the limit, a BOM dropped."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.types import Message

from analytics.web import bodies
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

LIMIT = 1000


class Receive:
    """An ASGI `receive` that hands out `messages` in order and counts the calls."""

    def __init__(self, *messages: Message) -> None:
        self._messages = list(messages)
        self.calls = 0

    async def __call__(self) -> Message:
        self.calls += 1
        return self._messages.pop(0)


def chunk(body: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def endless(size: int) -> Receive:
    """A client that would stream `size`-byte chunks forever."""
    return Receive(*[chunk(b"x" * size, more=True) for _ in range(10_000)])


# read_body


async def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    receive = Receive(chunk(b"x" * (LIMIT + 1)))
    with pytest.raises(BodyTooLarge):
        await read_body({b"content-length": str(LIMIT + 1).encode()}, receive, LIMIT)
    assert receive.calls == 0


async def test_streamed_chunks_past_the_limit_stop_the_reading() -> None:
    """No Content-Length (chunked): the chunk that crosses the limit is the last one read."""
    receive = endless(300)
    with pytest.raises(BodyTooLarge):
        await read_body({}, receive, LIMIT)
    assert receive.calls == 4  # 300, 600, 900, 1200 > 1000


async def test_a_declared_length_that_lies_is_caught_while_reading() -> None:
    receive = endless(600)
    with pytest.raises(BodyTooLarge):
        await read_body({b"content-length": b"10"}, receive, LIMIT)
    assert receive.calls == 2


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_exactly_the_limit_is_accepted_one_byte_more_is_not(declared: bool) -> None:
    def headers(size: int) -> dict[bytes, bytes]:
        return {b"content-length": str(size).encode()} if declared else {}

    receive = Receive(chunk(b"a" * 400, more=True), chunk(b"b" * 600))
    assert await read_body(headers(LIMIT), receive, LIMIT) == b"a" * 400 + b"b" * 600
    with pytest.raises(BodyTooLarge):
        await read_body(headers(LIMIT + 1), Receive(chunk(b"a" * 400, more=True), chunk(b"b" * 601)), LIMIT)


async def test_chunks_are_joined_and_a_message_without_body_is_empty() -> None:
    receive = Receive(chunk(b"[1,", more=True), {"type": "http.request", "more_body": True}, chunk(b"2]"))
    assert await read_body({}, receive, LIMIT) == b"[1,2]"


async def test_a_content_length_that_is_not_a_number_is_left_to_the_reading() -> None:
    assert await read_body({b"content-length": b"lots"}, Receive(chunk(b"{}")), LIMIT) == b"{}"


@pytest.mark.parametrize("before", [[], [chunk(b"x" * 10, more=True)]], ids=["at-once", "mid-body"])
async def test_client_disconnect_is_client_gone(before: list[Message]) -> None:
    receive = Receive(*before, {"type": "http.disconnect"})
    with pytest.raises(ClientGone):
        await read_body({}, receive, LIMIT)


# gunzip


def test_one_member_is_inflated() -> None:
    assert gunzip(gzip.compress(b'{"a": 1}'), LIMIT) == b'{"a": 1}'


def test_every_member_is_inflated_in_order() -> None:
    """`cat a.gz b.gz c.gz` is one valid gzip file (RFC 1952 section 2.2)."""
    members = gzip.compress(b"[1,") + gzip.compress(b"2,") + gzip.compress(b"3]")
    assert gunzip(members, LIMIT) == b"[1,2,3]"
    assert gunzip(members, LIMIT) == gzip.decompress(members)


def test_inflated_exactly_to_the_limit_is_accepted_one_byte_more_is_not() -> None:
    assert gunzip(gzip.compress(b"x" * LIMIT), LIMIT) == b"x" * LIMIT
    with pytest.raises(BodyTooLarge):
        gunzip(gzip.compress(b"x" * (LIMIT + 1)), LIMIT)


def test_the_members_count_together_against_the_limit() -> None:
    """Each member fits; their sum does not."""
    half = gzip.compress(b"x" * 600)
    with pytest.raises(BodyTooLarge):
        gunzip(half + half, LIMIT)


def bomb(inflated_bytes: int) -> bytes:
    """Zeros that inflate to `inflated_bytes`, compressed a megabyte at a time (level 1: fast, still about 230:1)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, bodies.GZIP_WBITS)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(inflated_bytes >> 20)]
    return b"".join([*parts, compressor.flush()])


@pytest.fixture(scope="module")
def big_bomb() -> bytes:
    return bomb(64 << 20)


def test_a_bomb_is_inflated_no_further_than_the_limit_plus_one(
    big_bomb: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    inflated: list[int] = []

    class Counting:
        def __init__(self, wbits: int) -> None:
            self._inflater = zlib.decompressobj(wbits)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self._inflater.decompress(data, max_length)
            inflated.append(len(out))
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inflater, name)

    monkeypatch.setattr(bodies, "zlib", SimpleNamespace(decompressobj=Counting, error=zlib.error))
    with pytest.raises(BodyTooLarge):
        gunzip(big_bomb, LIMIT)
    assert sum(inflated) == LIMIT + 1


def test_a_bomb_costs_memory_in_proportion_to_the_limit_not_its_expansion(big_bomb: bytes) -> None:
    """64 MiB of zeros against a 1 MiB limit: the peak stays a few MiB, not the 64 a full inflate would take."""
    limit = 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            gunzip(big_bomb, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * limit


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(gzip.compress(b"{}") + b"garbage", id="garbage-after-a-member"),
        pytest.param(gzip.compress(b"{}" * 100)[:-4], id="truncated-trailer"),
        pytest.param(gzip.compress(b"{}" * 100)[:20], id="truncated-data"),
        pytest.param(b"\x1f\x8b", id="truncated-header"),
        pytest.param(b"{}", id="not-gzip"),
        pytest.param(zlib.compress(b"{}"), id="zlib-not-gzip"),
        pytest.param(b"", id="empty"),
        pytest.param(gzip.compress(b"{}")[:-8] + b"\0\0\0\0" + gzip.compress(b"{}")[-4:], id="bad-crc"),
    ],
)
def test_what_is_not_whole_gzip_is_bad_gzip(body: bytes) -> None:
    with pytest.raises(BadGzip):
        gunzip(body, LIMIT)


# without_bom, is_json, content_encoding


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'\xef\xbb\xbf{"a":1}', b'{"a":1}'),
        (b'{"a":1}', b'{"a":1}'),
        (b"\xef\xbb\xbf\xef\xbb\xbf{}", b"\xef\xbb\xbf{}"),  # one BOM is dropped, a second is the body's problem
        (b'{"a":"\xef\xbb\xbf"}', b'{"a":"\xef\xbb\xbf"}'),
        (b"\xef\xbb", b"\xef\xbb"),
        (b"", b""),
    ],
)
def test_without_bom(body: bytes, expected: bytes) -> None:
    assert without_bom(body) == expected


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        (None, True),
        (b"application/json", True),
        (b"application/json; charset=utf-8", True),
        (b"Application/JSON", True),
        (b"  application/json  ", True),
        (b"text/plain;charset=UTF-8", True),  # navigator.sendBeacon with a string
        (b"application/vnd.api+json", True),
        (b"application/ld+json; profile=x", True),
        (b"text/html", False),
        (b"application/xml", False),
        (b"application/x-www-form-urlencoded", False),
        (b"multipart/form-data; boundary=x", False),
        (b"text/json", False),
        (b"application/jsonp", False),
        (b"image/svg+json", False),
        (b"", False),
    ],
)
def test_is_json(content_type: bytes | None, accepted: bool) -> None:
    assert is_json(content_type) is accepted


@pytest.mark.parametrize(
    ("headers", "encoding"),
    [
        ({}, b"identity"),
        ({b"content-encoding": b"identity"}, b"identity"),
        ({b"content-encoding": b"gzip"}, b"gzip"),
        ({b"content-encoding": b" GZip "}, b"gzip"),
    ],
)
def test_supported_content_encodings(headers: dict[bytes, bytes], encoding: bytes) -> None:
    assert content_encoding(headers) == encoding


@pytest.mark.parametrize("value", [b"br", b"deflate", b"x-gzip", b"compress", b"gzip, gzip", b"gzip, identity"])
def test_other_content_encodings_are_unsupported(value: bytes) -> None:
    with pytest.raises(UnsupportedEncoding):
        content_encoding({b"content-encoding": value})
