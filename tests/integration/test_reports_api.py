"""The v2 reporting endpoints over real HTTP: bad input in the contract's shape, tokens and CORS, empty sites,
live visitors, `period=all`, request text that only ever reaches PostgreSQL as a parameter, and visit filters that
join only the matching visits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.stats.params import parse_report_query
from analytics.stats.reports import Statement, event_metrics_sql, report_span
from tests.helpers.factories import CHROME, IPHONE
from tests.helpers.servers import Client
from tests.helpers.waiting import eventually
from tests.integration.test_kept_values import walk
from tests.integration.test_report_distincts import store

KINDS = ("aggregate", "timeseries", "breakdown", "realtime")
ORIGIN = "https://dashboard.example"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("kind", "query", "path", "words"),
    [
        ("aggregate", "metrics=pageviews,bogus,visits,nope", "query.metrics", "unknown metric(s): bogus, nope"),
        ("aggregate", "timezone=Mars/Olympus", "query.timezone", "IANA time zone"),
        ("aggregate", "period=custom&from=2026-02-01&to=2026-01-01", "query.from", "must not be after to"),
        ("aggregate", "period=custom&from=2000-01-01&to=2020-01-01", "query.to", "at most 10 years"),
        ("aggregate", "period=custom&from=2026-02-30&to=2026-03-01", "query.from", "real calendar date"),
        ("aggregate", "date=0001-01-01", "query.date", "from 1970-01-01"),
        ("aggregate", "from=2026-01-01", "query.from", "only with period=custom"),
        ("aggregate", "compare=yesterday", "query.compare", "previous_period"),
        ("aggregate", "period=fortnight", "query.period", "period must be one of"),
        ("aggregate", "filters=country", "query.filters", "dimension==a|b"),
        ("aggregate", "filters=planet==Mars", "query.filters", "unknown filter dimension: planet"),
        ("aggregate", "filters=path==", "query.filters", "non-empty"),
        ("timeseries", "period=12mo&interval=hour", "query.interval", "at most 31 days"),
        ("timeseries", "interval=minute", "query.interval", "interval must be one of"),
        ("breakdown", "property=path&limit=0", "query.limit", "from 1 to 1000"),
        ("breakdown", "property=path&limit=1001", "query.limit", "from 1 to 1000"),
        ("breakdown", "property=path&page=0", "query.page", "whole number"),
        ("breakdown", "property=galaxy", "query.property", "unknown property: galaxy"),
        ("breakdown", "", "query.property", "property is required"),
        ("realtime", "site_id=", "query.site_id", "site_id is required"),
    ],
)
async def test_bad_input_is_a_400_naming_the_parameter(
    api: httpx.AsyncClient, kind: str, query: str, path: str, words: str
) -> None:
    separator = "&" if query else ""
    url = (
        f"/api/v2/stats/{kind}?site_id=s{separator}{query}"
        if "site_id=" not in query
        else f"/api/v2/stats/{kind}?{query}"
    )
    response = await api.get(url)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "fail"
    messages = [error["message"] for error in body["errors"] if error["path"] == path]
    assert any(words in message for message in messages), body


async def test_every_problem_is_reported_at_once(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v2/stats/breakdown?metrics=nope&timezone=Nowhere&limit=0")
    assert response.status_code == 400
    paths = {error["path"] for error in response.json()["errors"]}
    assert paths == {"query.site_id", "query.metrics", "query.timezone", "query.limit", "query.property"}


async def test_a_site_without_data_is_zeros_not_404(api: httpx.AsyncClient) -> None:
    query = "site_id=empty&period=custom&from=2026-03-01&to=2026-03-03&metrics=pageviews,visits,bounce_rate"
    aggregate = await api.get(f"/api/v2/stats/aggregate?{query}&compare=previous_period")
    series = await api.get(f"/api/v2/stats/timeseries?{query}")
    breakdown = await api.get(f"/api/v2/stats/breakdown?{query}&property=source")
    live = await api.get("/api/v2/stats/realtime?site_id=empty")
    assert aggregate.json() == {
        "status": "success",
        "data": {
            "site_id": "empty",
            "period": {"from": "2026-03-01", "to": "2026-03-03", "timezone": "UTC"},
            "results": {
                "pageviews": {"value": 0, "previous": 0, "change": None},
                "visits": {"value": 0, "previous": 0, "change": None},
                "bounce_rate": {"value": 0, "previous": 0, "change": 0},
            },
            "meta": {"approximate": False},
        },
    }
    assert [row["date"] for row in series.json()["data"]["results"]] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert all(row["pageviews"] == 0 for row in series.json()["data"]["results"])
    assert breakdown.json()["data"]["results"] == []
    assert breakdown.json()["data"]["total_rows"] == 0
    assert live.json() == {"status": "success", "data": {"site_id": "empty", "results": {"visitors": 0}}}


async def test_reports_need_a_token_when_tokens_are_set_and_follow_the_stats_cors(client_with: Client) -> None:
    async with client_with(api_tokens=("secret",), stats_cors_origins=(ORIGIN,)) as client:
        for kind in KINDS:
            url = f"/api/v2/stats/{kind}?site_id=s&property=path"
            missing = await client.get(url)
            wrong = await client.get(url, headers={"authorization": "Bearer guess"})
            allowed = await client.get(url, headers={"authorization": "Bearer secret", "origin": ORIGIN})
            preflight = await client.options(url, headers={"origin": ORIGIN, "access-control-request-method": "GET"})
            assert (missing.status_code, wrong.status_code, allowed.status_code) == (401, 403, 200), kind
            assert allowed.headers["access-control-allow-origin"] == ORIGIN
            assert preflight.status_code == 204
    async with client_with() as closed:
        refused = await closed.get("/api/v2/stats/aggregate?site_id=s", headers={"origin": ORIGIN})
    assert refused.status_code == 403


async def test_live_visitors_are_the_distinct_visitors_of_the_last_five_minutes(service: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    events = [
        {"site_id": "live", "event_type": "page_view", "timestamp": iso(now - timedelta(seconds=30)), "user_id": "a"},
        {"site_id": "live", "event_type": "click", "timestamp": iso(now - timedelta(minutes=2)), "user_id": "a"},
        {"site_id": "live", "event_type": "page_view", "timestamp": iso(now - timedelta(minutes=4)), "user_id": "b"},
        {"site_id": "live", "event_type": "page_view", "timestamp": iso(now - timedelta(minutes=1)), "ip": "8.8.8.8"},
        {"site_id": "live", "event_type": "page_view", "timestamp": iso(now - timedelta(minutes=9)), "user_id": "c"},
        {"site_id": "other", "event_type": "page_view", "timestamp": iso(now), "user_id": "d"},
    ]
    response = await service.post("/api/ingestion/events", json=events, headers={"user-agent": IPHONE})
    assert response.status_code == 202

    async def three_live() -> None:
        live = await service.get("/api/v2/stats/realtime?site_id=live")
        assert live.json()["data"]["results"] == {"visitors": 3}  # a, b and the cookieless one; c left 9 min ago

    await eventually(three_live)


async def test_period_all_starts_on_the_local_day_of_the_first_event(service: httpx.AsyncClient) -> None:
    events = [
        {"site_id": "all", "event_type": "page_view", "timestamp": "2026-06-30T20:00:00Z", "user_id": "a"},
        {"site_id": "all", "event_type": "page_view", "timestamp": "2026-08-02T10:00:00Z", "user_id": "b"},
    ]
    assert (await service.post("/api/ingestion/events", json=events, headers={"user-agent": CHROME})).status_code == 202

    async def counted() -> Any:
        response = await service.get(
            "/api/v2/stats/timeseries?site_id=all&period=all&date=2026-08-15&timezone=Asia/Kathmandu"
        )
        data = response.json()["data"]
        assert sum(row["pageviews"] for row in data["results"]) == 2
        return data

    data = await eventually(counted)
    # 20:00 UTC on 30 June is 1 July 01:45 in Kathmandu: the first local day, and the months from there.
    assert data["period"] == {"from": "2026-07-01", "to": "2026-08-15", "timezone": "Asia/Kathmandu"}
    assert data["interval"] == "month"
    assert [(row["date"], row["pageviews"]) for row in data["results"]] == [("2026-07-01", 1), ("2026-08-01", 1)]


async def test_hours_are_labelled_with_the_zone_offset(service: httpx.AsyncClient) -> None:
    event = {"site_id": "hours", "event_type": "page_view", "timestamp": "2026-10-25T00:30:00Z", "user_id": "a"}
    assert (await service.post("/api/ingestion/event", json=event, headers={"user-agent": CHROME})).status_code == 202

    async def counted() -> list[dict[str, Any]]:
        response = await service.get(
            "/api/v2/stats/timeseries?site_id=hours&period=day&date=2026-10-25&timezone=Europe/Berlin"
        )
        results: list[dict[str, Any]] = response.json()["data"]["results"]
        assert sum(row["pageviews"] for row in results) == 1
        return results

    results = await eventually(counted)
    labels = [row["date"] for row in results]
    # Berlin leaves summer time at 03:00: the 25-hour day has two buckets labelled 02:00, one per offset.
    assert len(labels) == 25
    assert labels[2:4] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
    assert [row["pageviews"] for row in results if row["pageviews"]] == [1]
    assert results[2]["pageviews"] == 1  # 00:30 UTC is 02:30 summer time


async def test_filter_values_are_parameters_not_sql(service: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    hostile = "x'); DROP TABLE events; -- |"
    escaped = hostile.replace(";", "\\;").replace("|", "\\|")  # the filter syntax's own separators
    event = {"site_id": "quoted", "event_type": "page_view", "timestamp": "2026-03-01T10:00:00Z", "path": hostile}
    assert (await service.post("/api/ingestion/event", json=event, headers={"user-agent": CHROME})).status_code == 202

    async def found() -> None:
        response = await service.get(
            "/api/v2/stats/aggregate",
            params={
                "site_id": "quoted",
                "period": "day",
                "date": "2026-03-01",
                "metrics": "pageviews",
                "filters": f"path=={escaped};props.{escaped}!=1",
            },
        )
        assert response.json()["data"]["results"] == {"pageviews": {"value": 1}}

    await eventually(found)
    breakdown = await service.get(
        "/api/v2/stats/breakdown",
        params={"site_id": "quoted", "period": "day", "date": "2026-03-01", "property": f"props.{hostile}"},
    )
    assert breakdown.json()["data"]["results"] == [{f"props.{hostile}": None, "pageviews": 1, "visitors": 1}]
    past_the_end = await service.get(
        "/api/v2/stats/breakdown",
        params={"site_id": "quoted", "period": "day", "date": "2026-03-01", "property": "path", "page": "3"},
    )
    assert (past_the_end.json()["data"]["results"], past_the_end.json()["data"]["total_rows"]) == ([], 1)
    assert await db.fetchval("SELECT count(*) FROM events WHERE site_id = 'quoted'") == 1


async def test_reports_are_planned_for_their_own_site_without_jit(pool: asyncpg.Pool) -> None:
    """A generic plan made for an average site, and JIT compilation, cost more than they saved
    (analytics/store/connect.py)."""
    assert await pool.fetchval("SHOW jit") == "off"
    assert await pool.fetchval("SHOW plan_cache_mode") == "force_custom_plan"


async def test_a_visit_filter_without_none_joins_only_the_matching_visits(db: asyncpg.Connection) -> None:
    """Pages for country==DE: the visits are filtered before the events are joined with them, so the join reads the
    German visits, not every visit of the range; with (none) among the values a missing visit may match, and all are
    joined."""
    start = datetime(2026, 5, 4, tzinfo=UTC)
    events = [
        Event(
            "filtered",
            "page_view",
            f"/p{n % 7}",
            None,
            epoch_microseconds(start + timedelta(hours=n)),
            0,
            visitor=f"v{n}",
            country="DE" if n % 4 == 0 else "US",
        )
        for n in range(40)
    ]
    await store(db, events)
    await db.execute("ANALYZE visits")

    async def filter_at_visits(filters: str) -> bool:
        params = {"site_id": "filtered", "period": "day", "date": "2026-05-05", "property": "path", "filters": filters}
        query = parse_report_query("breakdown", params)
        span = await report_span(db, query)
        statement = Statement(query.site_id, span, [span.start])
        explained = await db.fetchval("EXPLAIN (FORMAT JSON) " + event_metrics_sql(query, statement), *statement.args)
        (scan,) = [node for node in walk(json.loads(explained)[0]["Plan"]) if node.get("Relation Name") == "visits"]
        return "country" in scan.get("Filter", "") + scan.get("Index Cond", "") + scan.get("Recheck Cond", "")

    assert await filter_at_visits("country==DE")
    assert not await filter_at_visits("country==DE|(none)")
