"""uvicorn as the service runs it: read deadlines for slow clients, no proxy headers unless configured, our signals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Final

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMEOUT_BODY: Final = b'{"status":"fail","message":"request not received in time"}'
REQUEST_TIMEOUT_RESPONSE: Final = b"".join(
    (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n",
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_TIMEOUT_BODY),
        _TIMEOUT_BODY,
    )
)


class DeadlineProtocol(HttpToolsProtocol):
    """HTTP/1.1 with deadlines uvicorn lacks: for a request's headers, then for its body.

    uvicorn only times out idle keep-alive connections, so a client sending a byte a second holds a connection (and
    a task awaiting its body) for as long as it likes. The header deadline starts when a connection opens or a
    request's first byte arrives and ends at the blank line; the body deadline runs from there to the last byte.
    Missing either closes the connection: with a 408 if no handler has started, otherwise the handler sees a
    disconnect.
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 32 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

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

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout_s, self._headers_late)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout_s, self._body_late)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _headers_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(REQUEST_TIMEOUT_RESPONSE)
            self.transport.close()

    def _body_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


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
