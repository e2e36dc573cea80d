"""Request bodies as clients send them: a size limit enforced while reading, gzip (every member, bounded), a BOM."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Final

from starlette.types import Receive

GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
UTF8_BOM: Final = b"\xef\xbb\xbf"


class BodyTooLarge(Exception):
    pass


class BadGzip(Exception):
    pass


class UnsupportedEncoding(Exception):
    pass


class ClientGone(Exception):
    """The client hung up (or was cut off by a read timeout) before its body arrived: there is no one to answer."""


def is_json(content_type: bytes | None) -> bool:
    """JSON, `+json` types, text/plain (sendBeacon's type) and a missing header are read as JSON; others get 415."""
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    is_json_suffix = media_type.startswith(b"application/") and media_type.endswith(b"+json")
    return media_type in (b"application/json", b"text/plain") or is_json_suffix


def content_encoding(headers: Mapping[bytes, bytes]) -> bytes:
    """`identity` or `gzip`; anything else raises `UnsupportedEncoding`."""
    encoding = headers.get(b"content-encoding", b"identity").strip().lower()
    if encoding not in (b"identity", b"gzip"):
        raise UnsupportedEncoding
    return encoding


async def read_body(headers: Mapping[bytes, bytes], receive: Receive, limit: int) -> bytes:
    """Read at most `limit` bytes; refuse early on a declared Content-Length, and stop reading past the limit."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate at most `limit` + 1 bytes: a gzip bomb costs the limit, never its expansion.

    A gzip file may hold several members one after another (RFC 1952 §2.2; `cat a.gz b.gz`); all are inflated.
    """
    members: list[bytes] = []
    size = 0
    remaining = body
    while True:
        inflater = zlib.decompressobj(GZIP_WBITS)
        try:
            inflated = inflater.decompress(remaining, limit + 1 - size)
        except zlib.error:
            raise BadGzip from None
        size += len(inflated)
        if size > limit:
            raise BodyTooLarge
        if not inflater.eof:
            raise BadGzip
        members.append(inflated)
        remaining = inflater.unused_data
        if not remaining:
            return b"".join(members)


def without_bom(body: bytes) -> bytes:
    """.NET and PowerShell prefix JSON with a byte-order mark; RFC 8259 lets a parser ignore it."""
    return body[len(UTF8_BOM) :] if body.startswith(UTF8_BOM) else body
