"""CORS, applied in one place: preflights answered, a refused origin's request answered 403 before anything else
runs, an allowed origin's answer given the headers browsers need. Requests without an Origin (servers, curl) pass."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from analytics.web.asgi import Headers, encode, header, send_json
from analytics.web.responses import Fail

CORS_MAX_AGE_S: Final = 86_400
ORIGIN_REFUSED: Final = Fail(status="fail", message="origin not allowed")
ORIGIN_REFUSED_BODY: Final = encode(ORIGIN_REFUSED)


class CorsPolicy:
    """The CORS headers for one set of endpoints; `*` allows any origin, an empty list none."""

    def __init__(self, origins: Collection[str], methods: str, request_headers: str) -> None:
        self._any = "*" in origins
        self._origins = frozenset(origin.encode() for origin in origins if origin != "*")
        # A fixed answer for `*`; a listed origin is echoed, and caches must then keep answers per origin.
        self._any_headers: Headers = [(b"access-control-allow-origin", b"*")]
        self._preflight: Headers = [
            (b"access-control-allow-methods", methods.encode()),
            (b"access-control-allow-headers", request_headers.encode()),
            (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()),
        ]

    def response_headers(self, origin: bytes | None) -> Headers | None:
        """Headers for a response to `origin`: none without an Origin header, None for an origin not allowed."""
        if origin is None:
            return ()
        if self._any:
            return self._any_headers
        if origin in self._origins:
            return [(b"access-control-allow-origin", origin), (b"vary", b"origin")]
        return None

    def preflight_headers(self, origin: bytes) -> Headers | None:
        allowed = self.response_headers(origin)
        return None if allowed is None else [*allowed, *self._preflight]


class Cors:
    """An endpoint behind a CORS policy. `on_refused` counts refusals (ingestion's `forbidden` metric)."""

    def __init__(self, policy: CorsPolicy, app: ASGIApp, on_refused: Callable[[], None] | None = None) -> None:
        self.policy = policy
        self.app = app
        self._on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = header(scope, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self.policy.response_headers(origin)
        if allowed is None:
            await self._refuse(send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *allowed]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def preflight(self, origin: bytes, send: Send) -> None:
        """Answered before routing: a browser may send one before every event it cannot send as a simple request."""
        headers = self.policy.preflight_headers(origin)
        if headers is None:
            await self._refuse(send)
            return
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, send: Send) -> None:
        if self._on_refused is not None:
            self._on_refused()
        await send_json(send, 403, ORIGIN_REFUSED_BODY)
