"""The few ASGI helpers every endpoint shares: a JSON answer sent without building Response objects, headers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from starlette.responses import Response
from starlette.types import Scope, Send

Headers = Sequence[tuple[bytes, bytes]]

JSON_HEADERS: Final = [(b"content-type", b"application/json")]
RETRY_AFTER: Final = (b"retry-after", b"1")

encode = msgspec.json.Encoder().encode


class JSONResponse(Response):
    """Starlette's response, encoded by msgspec (the contract's Structs)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode(content)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def send_json(send: Send, status: int, body: bytes, extra_headers: Headers = ()) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def retry_after(wait_s: float) -> tuple[bytes, bytes]:
    return (b"retry-after", str(max(1, math.ceil(wait_s))).encode())
