"""uvicorn as the service runs it: read deadlines and size limits for clients, lingering closes, JSON for what never
reaches the app, no proxy headers unless configured, our signals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Final

import msgspec
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# What is still read and dropped after an answer that came before the end of its request (a 413 refused on its
# Content-Length, say), so that a client sending its whole body before it reads gets the answer, not a reset. A fixed
# cap, as the protocol does not know the app's body limit: 16 times the default one, so an over-limit upload of up to
# 16 MiB still sees its 413; a client sending more than that after being answered is flooding, not uploading.
DRAIN_LIMIT_BYTES: Final = 16 * 1024 * 1024
# ...and for at most this long (nginx's lingering_timeout): a client on a slow link may finish, a trickle may not.
DRAIN_TIMEOUT_S: Final = 5.0
REQUEST_TIMEOUT: Final = "request not received in time"


class DeadlineProtocol(HttpToolsProtocol):
    """HTTP/1.1 with the limits uvicorn lacks: deadlines and a size cap for a request's headers, bounded draining of
    requests answered early, and JSON for the errors the app never sees.

    Deadlines: uvicorn only times out idle keep-alive connections, so a client sending a byte a second holds a
    connection (and a task awaiting its body) for as long as it likes. The header deadline starts when a connection
    opens or a request's first byte arrives and ends at the blank line; the body deadline runs from there to the last
    byte. Missing either closes the connection: with a 408 if no handler has started, otherwise the handler sees a
    disconnect.

    Header size: httptools keeps an unfinished header line in memory however long it grows, so while a request's
    headers are incomplete the parser is fed at most `max_header_bytes` (counted from the connection's start or the
    end of the previous request); past that, a 431. Bytes of a pipelined request that arrive in the same read as the
    end of the request before it are not counted, so the parser may hold up to one socket read (256 KiB) more.

    Early answers: closing a connection whose receive buffer still holds unread bytes makes the kernel send a reset,
    and a client that sends its whole body before reading (urllib, requests, most SDKs) then loses the answer. So
    after an answer that came before its request ended, the rest is read and dropped, up to DRAIN_LIMIT_BYTES and
    DRAIN_TIMEOUT_S, past which the connection is closed. On a keep-alive connection the body is drained through the
    parser and the connection then stays open for the next request (the client was told nothing else). A connection
    that must close (`connection: close`, a 400 from the parser, a 431) is half-closed instead: the answer and a FIN
    go out, and everything is dropped until the client closes too (nginx's lingering close). The 400 and 431 are not
    written while an answer on the connection is still due: the connection is just closed, and a handler sees a
    disconnect.
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 32 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        # What the parser may still be fed before the current request's headers end; None while a body is read.
        self._header_allowance: int | None = self.max_header_bytes
        # Bumped at the end of each request's headers and of each request: tells whether a feed crossed one.
        self._boundaries = 0
        self._draining = False  # the rest of a body answered early is dropped, the connection stays open after it
        self.lingering = False  # half-closed: everything is dropped until the client closes
        self._dropped = 0
        self._cycle_transport = _CycleTransport(self)

    def _arm(self, timeout_s: float, on_expiry: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(timeout_s, on_expiry)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._draining or self.lingering:
            self._dropped += len(data)
            if self._dropped > DRAIN_LIMIT_BYTES:
                self.transport.close()
                return
            if self.lingering:
                return
        allowance = self._header_allowance
        boundaries = self._boundaries
        if allowance is None or len(data) <= allowance:
            super().data_received(data)
            if allowance is not None and self._boundaries == boundaries:
                self._header_allowance = allowance - len(data)
            return
        if allowance:
            super().data_received(data[:allowance])
        if self.lingering or self.transport.is_closing():
            return
        if self._boundaries == boundaries:
            self._refuse(431, f"request headers exceed {self.max_header_bytes} bytes")
        else:
            super().data_received(data[allowance:])

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._unset_keepalive_if_required()  # armed by a drain that ended in the read carrying this request
        self._arm(self.header_timeout_s, self._headers_late)

    def on_headers_complete(self) -> None:
        self._header_allowance = None
        self._boundaries += 1
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = self._cycle_transport
        self._arm(self.body_timeout_s, self._cut_off)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._header_allowance = self.max_header_bytes
        self._boundaries += 1
        if self._draining:
            self._draining = False
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._answered_early() and not self.transport.is_closing():
            self._unset_keepalive_if_required()  # the request is still arriving: the drain deadline rules, not idling
            if not self.lingering:
                self._draining = True
                self._dropped = 0
                self._arm(DRAIN_TIMEOUT_S, self._cut_off)

    def close_after_answer(self) -> None:
        """A request cycle's close: lingering if the request it answered is still arriving."""
        if self._answered_early():
            self._linger()
        else:
            self.transport.close()

    def _answered_early(self) -> bool:
        return self._header_allowance is None and self.cycle.response_complete

    def _linger(self) -> None:
        self.lingering = True
        self._dropped = 0
        self.flow.resume_reading()
        self.transport.write_eof()
        self._arm(DRAIN_TIMEOUT_S, self._cut_off)

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request the app never saw, and linger; just close if an answer is still due, not to garble it."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        self.transport.write(self._fail(status, message))
        self._linger()

    def _fail(self, status: int, message: str) -> bytes:
        body = msgspec.json.encode({"status": "fail", "message": message})
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)]
        return b"".join([*head, body])

    def _headers_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(self._fail(408, REQUEST_TIMEOUT))
            self.transport.close()

    def _cut_off(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class _CycleTransport(asyncio.Transport):
    """The transport uvicorn's request cycles write to: their close after an answer lingers (DeadlineProtocol)."""

    def __init__(self, protocol: DeadlineProtocol) -> None:
        super().__init__()
        self._protocol = protocol

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        self._protocol.transport.write(data)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._protocol.transport.is_closing()

    def close(self) -> None:
        self._protocol.close_after_answer()


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` owns SIGINT/SIGTERM for every role in the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server_config(
    app: ASGIApp,
    host: str,
    port: int,
    header_timeout_s: float = 10.0,
    body_timeout_s: float = 30.0,
    max_header_bytes: int = 32 * 1024,
) -> uvicorn.Config:
    """One configuration for the service and its tests, so what is tested is what runs."""
    protocol = type(
        "ConfiguredDeadlineProtocol",
        (DeadlineProtocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s, "max_header_bytes": max_header_bytes},
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        lifespan="off",
        access_log=False,
        log_config=None,
        # Client addresses come from the connection, or from ANALYTICS_TRUSTED_PROXY_HEADER (analytics.access).
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
