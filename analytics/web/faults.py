"""The one place an unexpected fault becomes the contract's 500: details in the log under a request id, the id (never
the details) to the client. Also the contract's JSON for Starlette's own 404 and 405."""

from __future__ import annotations

import logging
import uuid
from typing import Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope, Send

from analytics.web.asgi import JSONResponse, encode, header, send_json
from analytics.web.responses import Fail, InternalError

logger = logging.getLogger(__name__)

INTERNAL_ERROR: Final = InternalError()
INTERNAL_ERROR_BODY: Final = encode(INTERNAL_ERROR)


def log_fault(method: str, path: str, client_request_id: str | None, error: BaseException) -> str:
    request_id = client_request_id or uuid.uuid4().hex
    logger.error("unhandled error on %s %s", method, path, exc_info=error, extra={"request_id": request_id})
    return request_id


async def send_fault(scope: Scope, send: Send, error: BaseException) -> None:
    """For the bare ASGI endpoints (ingestion), which no Starlette handler guards."""
    client_id = header(scope, b"x-request-id")
    request_id = log_fault(scope["method"], scope["path"], client_id.decode("latin-1") if client_id else None, error)
    await send_json(send, 500, INTERNAL_ERROR_BODY, [(b"x-request-id", request_id.encode("latin-1"))])


async def internal_error(request: Request, error: Exception) -> Response:
    """Starlette's handler for everything routed through it."""
    request_id = log_fault(request.method, request.url.path, request.headers.get("x-request-id"), error)
    return JSONResponse(INTERNAL_ERROR, status_code=500, headers={"X-Request-ID": request_id})


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = "Route not found." if error.status_code == 404 else error.detail
    return JSONResponse(Fail(status="fail", message=message), status_code=error.status_code, headers=error.headers)
