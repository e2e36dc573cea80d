"""The HTTP ceiling: a raw ASGI app that reads the body and answers 202 `{"status":"queued"}`, nothing else.

`--server service` (the default) serves it exactly as `analytics serve` serves the real app: the uvicorn
configuration from analytics.web.server.server_config (its httptools-based protocol with read deadlines, lifespan off,
access log off, no proxy headers, no log config) on a uvloop loop started with `uvloop.run`, as
analytics/service.py does.
`--server plain` serves it with stock uvicorn settings of that kind (httptools, lifespan off, access log off), the
reference without the service's protocol subclass. `bench.ingest` runs it as a subprocess:
    python -m bench.noop --port 3999 [--server service|plain]
"""

from __future__ import annotations

import argparse
from typing import Final

import uvicorn
import uvloop
from starlette.types import Receive, Scope, Send

from analytics.web.server import server_config

BODY: Final = b'{"status":"queued"}'
HEADERS: Final = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
HEALTHY: Final = b'{"message":"ok"}'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
    if scope["method"] == "GET":  # the harness's readiness probe
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"16")]})
        await send({"type": "http.response.body", "body": HEALTHY})
        return
    await send({"type": "http.response.start", "status": 202, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3999)
    parser.add_argument("--server", choices=["service", "plain"], default="service")
    args = parser.parse_args()
    if args.server == "service":
        config = server_config(app, args.host, args.port)
    else:
        config = uvicorn.Config(
            app, host=args.host, port=args.port, http="httptools", lifespan="off", access_log=False, log_config=None
        )
    uvloop.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
