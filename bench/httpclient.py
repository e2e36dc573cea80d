"""A minimal HTTP/1.1 keep-alive client over an asyncio Protocol: one request in flight per connection.

Just enough for load generators and latency probes against this service: requests are pre-built bytes, responses
must carry Content-Length (uvicorn's do for every response this service sends). Much cheaper per request than a
general-purpose client, so the generator does not eat the core the server needs.
"""

from __future__ import annotations

import asyncio
from typing import Final, cast

HEADER_END: Final = b"\r\n\r\n"


def build_request(
    method: str,
    path: str,
    *,
    host: str = "127.0.0.1",
    body: bytes = b"",
    content_type: str = "application/json",
    user_agent: str | None = None,
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if user_agent is not None:
        head += f"User-Agent: {user_agent}\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class HttpError(Exception):
    pass


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._closed: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)  # uvloop's transports do not subclass asyncio's

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = exc or HttpError("connection closed")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self._closed)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None or self._waiter.done():
            return
        head_end = self._buffer.find(HEADER_END)
        if head_end < 0:
            return
        head = bytes(self._buffer[:head_end])
        length = _content_length(head)
        total = head_end + 4 + length
        if len(self._buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self._buffer[head_end + 4 : total])
        del self._buffer[:total]
        self._waiter.set_result((status, body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one pre-built request and wait for its response: (status, body)."""
        if self._closed is not None:
            raise self._closed
        assert self._transport is not None
        assert self._waiter is None, "one request at a time per connection"
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise HttpError(f"response without Content-Length: {head[:200]!r}")


async def connect(host: str, port: int) -> Connection:
    _, protocol = await asyncio.get_running_loop().create_connection(Connection, host, port)
    return protocol
