"""The v1 stats endpoint: token, query, an answer from the rollups within its deadline, or a 503."""

from __future__ import annotations

import logging
from typing import Final

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from analytics.errors import DatabaseError
from analytics.events.contract import InvalidInput
from analytics.observability.logs import StateLog
from analytics.observability.metrics import Metrics
from analytics.stats.query import parse_stats_query
from analytics.stats.rollups import site_stats
from analytics.web.access import BearerTokens, Verdict
from analytics.web.asgi import JSONResponse
from analytics.web.deadlines import within
from analytics.web.responses import Fail, Invalid, StatsFound

logger = logging.getLogger(__name__)

NO_DATA: Final = "No analytics data found for the specified criteria."
# A stats answer, or a 503 saying the database did not give one in time.
STATS_DEADLINE_S: Final = 3.0


class Reporting:
    def __init__(self, pool: asyncpg.Pool, tokens: BearerTokens, metrics: Metrics) -> None:
        self._pool = pool
        self._tokens = tokens
        self._unavailable = metrics.unavailable.labels("postgresql")
        self._database = StateLog(logger, "stats unavailable, answering 503", "stats available again")

    async def stats(self, request: Request) -> Response:
        verdict = self._tokens.check(request.headers.get("authorization"))
        if verdict is Verdict.MISSING:
            return JSONResponse(
                Fail(status="fail", message="Authorization: Bearer <token> required"),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if verdict is Verdict.WRONG:
            return JSONResponse(Fail(status="fail", message="token not accepted"), status_code=403)
        try:
            query = parse_stats_query(request.query_params.get("site_id"), request.query_params.get("date"))
        except InvalidInput as invalid:
            return JSONResponse(Invalid(errors=invalid.errors), status_code=400)
        try:
            result = await within(STATS_DEADLINE_S, site_stats(self._pool, query))
        except (DatabaseError, TimeoutError) as error:
            self._database.failed(error)
            self._unavailable.inc()
            return JSONResponse(
                Fail(status="error", message="database unavailable"), status_code=503, headers={"Retry-After": "1"}
            )
        self._database.recovered()
        if result is None:
            return JSONResponse(Fail(status="fail", message=NO_DATA), status_code=404)
        return JSONResponse(StatsFound(data=result))
