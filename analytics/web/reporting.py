"""The reporting endpoints, v1 stats and the four of v2: token (or share link), query, an answer within the deadline,
or a 503."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from analytics.errors import DatabaseError
from analytics.events.contract import InvalidInput
from analytics.observability.logs import StateLog
from analytics.observability.metrics import Metrics
from analytics.stats import reports
from analytics.stats.params import ReportQuery, parse_report_query
from analytics.stats.periods import DateRange
from analytics.stats.query import parse_stats_query
from analytics.stats.rollups import site_stats
from analytics.store.shares import shared_site
from analytics.web.access import SHARE_PREFIX, BearerTokens, Verdict, bearer, token_digest
from analytics.web.asgi import JSONResponse
from analytics.web.deadlines import within
from analytics.web.responses import (
    AggregateFound,
    AggregateReport,
    BreakdownFound,
    BreakdownReport,
    Fail,
    Invalid,
    LiveVisitors,
    RealtimeFound,
    RealtimeReport,
    ReportMeta,
    ReportPeriod,
    StatsFound,
    TimeseriesFound,
    TimeseriesReport,
)

logger = logging.getLogger(__name__)

NO_DATA: Final = "No analytics data found for the specified criteria."
OTHER_SITE: Final = "this share link is for another site"
# A stats answer, or a 503 saying the database did not give one in time.
STATS_DEADLINE_S: Final = 3.0
# v2 reports read raw events over ranges of up to ten years.
REPORT_DEADLINE_S: Final = 10.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Grant:
    """What a request may read: every site (a stats token, or no tokens configured), or its share link's site."""

    site_id: str | None = None

    def allows(self, site_id: str) -> bool:
        return self.site_id is None or self.site_id == site_id


def _forbidden(message: str) -> Response:
    return JSONResponse(Fail(status="fail", message=message), status_code=403)


class Reporting:
    """Two pools, the same one unless STATS_DATABASE_URL is set. `rollup_pool` answers what reads the rollup tables
    only (v1 stats here, the site list in `web.dashboard`): a logical replica of them, behind by its lag. `pool`, the
    primary, answers the rest: v2 reports read raw events and visits, which are not replicated, and share links are
    looked up there so that a revocation takes effect at once, however far the replica lags."""

    def __init__(self, pool: asyncpg.Pool, rollup_pool: asyncpg.Pool, tokens: BearerTokens, metrics: Metrics) -> None:
        self._pool = pool
        self._rollup_pool = rollup_pool
        self._tokens = tokens
        self._unavailable = metrics.unavailable.labels("postgresql")
        self._database = StateLog(logger, "stats unavailable, answering 503", "stats available again")

    @property
    def rollup_pool(self) -> asyncpg.Pool:
        return self._rollup_pool

    async def grant(self, request: Request) -> Grant | Response:
        """What the request's token lets it read, or the 401, 403 or 503 that answers it (also for the dashboard).

        A share link's token is looked up on every request, so a revoked link stops at once on every api process;
        it is resolved even when no tokens are configured, so a link shows its own site, and only that one."""
        authorization = request.headers.get("authorization")
        token = bearer(authorization)
        if token is not None and token.startswith(SHARE_PREFIX) and not self._tokens.accepts(token):
            try:
                site_id = await within(STATS_DEADLINE_S, shared_site(self._pool, token_digest(token)))
            except (DatabaseError, TimeoutError) as error:
                return self.unavailable(error)
            self.recovered()
            return _forbidden("share link revoked or unknown") if site_id is None else Grant(site_id)
        verdict = self._tokens.check(authorization)
        if verdict is Verdict.MISSING:
            return JSONResponse(
                Fail(status="fail", message="Authorization: Bearer <token> required"),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if verdict is Verdict.WRONG:
            return _forbidden("token not accepted")
        return Grant()

    def unavailable(self, error: Exception) -> Response:
        """The 503 for a database that did not answer in time, logged once per outage and counted."""
        self._database.failed(error)
        self._unavailable.inc()
        return JSONResponse(
            Fail(status="error", message="database unavailable"), status_code=503, headers={"Retry-After": "1"}
        )

    def recovered(self) -> None:
        """An answer after an outage: the recovery is logged once."""
        self._database.recovered()

    async def stats(self, request: Request) -> Response:
        grant = await self.grant(request)
        if not isinstance(grant, Grant):
            return grant
        try:
            query = parse_stats_query(request.query_params.get("site_id"), request.query_params.get("date"))
        except InvalidInput as invalid:
            return JSONResponse(Invalid(errors=invalid.errors), status_code=400)
        if not grant.allows(query.site_id):
            return _forbidden(OTHER_SITE)
        try:
            result = await within(STATS_DEADLINE_S, site_stats(self._rollup_pool, query))
        except (DatabaseError, TimeoutError) as error:
            return self.unavailable(error)
        self.recovered()
        if result is None:
            return JSONResponse(Fail(status="fail", message=NO_DATA), status_code=404)
        return JSONResponse(StatsFound(data=result))

    async def _report(
        self,
        request: Request,
        kind: str,
        answer: Callable[[ReportQuery], Awaitable[T]],
        shape: Callable[[ReportQuery, T], object],
    ) -> Response:
        grant = await self.grant(request)
        if not isinstance(grant, Grant):
            return grant
        try:
            query = parse_report_query(kind, request.query_params)
        except InvalidInput as invalid:
            return JSONResponse(Invalid(errors=invalid.errors), status_code=400)
        if not grant.allows(query.site_id):
            return _forbidden(OTHER_SITE)
        try:
            result = await within(REPORT_DEADLINE_S, answer(query))
        except (DatabaseError, TimeoutError) as error:
            return self.unavailable(error)
        self.recovered()
        return JSONResponse(shape(query, result))

    async def aggregate(self, request: Request) -> Response:
        def shape(query: ReportQuery, answer: reports.AggregateAnswer) -> AggregateFound:
            report = AggregateReport(
                query.site_id, _period(answer.span), answer.results, _meta(answer.coverage, answer.approximate)
            )
            return AggregateFound(data=report)

        return await self._report(request, "aggregate", lambda query: reports.aggregate(self._pool, query), shape)

    async def timeseries(self, request: Request) -> Response:
        def shape(query: ReportQuery, answer: reports.TimeseriesAnswer) -> TimeseriesFound:
            report = TimeseriesReport(
                query.site_id,
                _period(answer.span),
                answer.interval,
                answer.results,
                _meta(answer.coverage, answer.approximate),
            )
            return TimeseriesFound(data=report)

        return await self._report(request, "timeseries", lambda query: reports.timeseries(self._pool, query), shape)

    async def breakdown(self, request: Request) -> Response:
        def shape(query: ReportQuery, answer: reports.BreakdownAnswer) -> BreakdownFound:
            assert query.property is not None
            report = BreakdownReport(
                query.site_id,
                _period(answer.span),
                query.property,
                answer.results,
                answer.total_rows,
                query.page,
                query.limit,
                _meta(answer.coverage),
            )
            return BreakdownFound(data=report)

        return await self._report(request, "breakdown", lambda query: reports.breakdown(self._pool, query), shape)

    async def realtime(self, request: Request) -> Response:
        def shape(query: ReportQuery, visitors: int) -> RealtimeFound:
            return RealtimeFound(data=RealtimeReport(query.site_id, LiveVisitors(visitors)))

        return await self._report(
            request, "realtime", lambda query: reports.live_visitors(self._pool, query.site_id), shape
        )


def _meta(coverage: reports.Coverage, approximate: bool = False) -> ReportMeta:
    since = coverage.raw_events_since
    return ReportMeta(
        approximate=approximate, raw_events_since=since.isoformat() if since else None, incomplete=coverage.incomplete
    )


def _period(span: DateRange) -> ReportPeriod:
    return ReportPeriod(span.first.isoformat(), span.last.isoformat(), span.zone.key)
