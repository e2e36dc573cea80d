"""Reporting API v2 against an oracle: random events (sites, users and cookieless visitors, paths, sources, UTM,
countries, devices, props, times across DST changes and midnights, retries) go through the real HTTP service, Redis
and the writer into PostgreSQL; every endpoint's answer, in six zones, for each metric, interval, filter and
breakdown, must equal a brute-force computation in plain Python over what was sent."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.stats.keeper import keep_past_days
from tests.helpers.factories import CHROME, IPHONE
from tests.helpers.waiting import eventually

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham")
# Event times fall in these windows: Chatham starts DST at 14:00 UTC on 26 September, Berlin ends it at 01:00 UTC on
# 25 October, New York at 06:00 UTC on 1 November; each window also crosses midnight in several of the zones.
WINDOWS = (
    datetime(2026, 9, 26, 12, tzinfo=UTC),
    datetime(2026, 10, 24, 22, tzinfo=UTC),
    datetime(2026, 11, 1, 4, tzinfo=UTC),
)
WINDOW_MINUTES = 240
FULL_RANGE = (date(2026, 9, 25), date(2026, 11, 2))
COMPARED_RANGE = (date(2026, 10, 25), date(2026, 11, 2))  # its previous period holds the start of window 2
HOURLY_RANGES = ((date(2026, 9, 26), date(2026, 9, 27)), (date(2026, 10, 24), date(2026, 10, 25)))

FIREFOX_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7; rv:132.0) Gecko/20100101 Firefox/132.0"
AGENTS = {
    CHROME: ("Chrome", "131", "Windows", "10", "desktop"),
    IPHONE: ("Mobile Safari", "17", "iOS", "17.5", "mobile"),
    FIREFOX_MAC: ("Firefox", "132", "Mac OS X", "10.15", "desktop"),
}
ADDRESSES = {"8.8.8.8": "US", "81.2.69.160": "GB", "2a00:1450:4001:81b::200e": "DE", "10.1.2.3": None}
PATHS = (None, "/", "/a", "/b", "/B", "/é")
URLS = (
    None,
    "https://site.test/landing?utm_source=news&utm_medium=email",
    "https://www.site.test/x?utm_campaign=spring&utm_source=ads&utm_term=shoes&utm_content=c1",
)
REFERRERS = (
    None,
    "https://www.google.com/search?q=x",
    "https://news.ycombinator.com/item?id=1",
    "https://site.test/internal",
)
PROPS: tuple[dict[str, Any] | None, ...] = (None, {"plan": "pro"}, {"plan": "free", "seats": 3}, {"annual": True})
EVENT_DIMENSIONS = ("event_type", "path")
VISIT_DIMENSIONS = (
    "entry_page",
    "exit_page",
    "source",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "country",
    "device",
    "browser",
    "browser_version",
    "os",
    "os_version",
)
PROPERTIES = (*EVENT_DIMENSIONS, *VISIT_DIMENSIONS, "props.plan", "props.seats", "props")
# The distinct keeper keeps every UTC day before this one: all of the windows'.
KEPT_UNTIL = date(2026, 11, 4)
# Ranges of kept days and parts of days: the whole of window 2 (a kept UTC day and the next one's start, or parts of
# both in other zones) and a single local day (a kept UTC day ranked in the database, in UTC).
KEPT_RANGES = ((date(2026, 10, 24), date(2026, 10, 25)), (date(2026, 10, 24), date(2026, 10, 24)), FULL_RANGE)
KEPT_PROPERTIES = (*EVENT_DIMENSIONS, *VISIT_DIMENSIONS)
KEPT_METRIC_SETS = (("pageviews", "visitors"), ("visitors", "users"), ("users", "events", "pageviews"), ("events",))
METRICS = ("pageviews", "visitors", "users", "visits", "bounce_rate", "visit_duration", "views_per_visit", "events")
VISIT_METRICS = {"visits", "bounce_rate", "visit_duration", "views_per_visit"}
EVENT_METRICS = {"pageviews", "visitors", "users", "events"}
NONE = "(none)"
VISIT_GAP = timedelta(minutes=30)

example_numbers = itertools.count()


# Who sends: three users (who may switch devices) and three cookieless visitors (an address and a browser each).
PERSONAS: tuple[tuple[str | None, str | None, str | None], ...] = (
    ("u1", None, None),
    ("u2", None, None),
    ("ü3", None, None),
    (None, "81.2.69.160", CHROME),
    (None, "8.8.8.8", IPHONE),
    (None, "10.1.2.3", FIREFOX_MAC),
)
# Minutes into a window: gaps just under, at and just over the 30 minutes that end a visit, and longer ones.
MINUTES = (0, 10, 25, 29, 30, 31, 45, 55, 60, 61, 89, 90, 100, 120, 150, 151, 180, 240)


@dataclass(frozen=True)
class Draft:
    site: str
    persona: int
    address: str
    agent: str
    window: int
    minute: int
    event_type: str
    path: str | None
    url: str | None
    referrer: str | None
    props: dict[str, Any] | None
    with_id: bool

    @property
    def user(self) -> str | None:
        return PERSONAS[self.persona][0]

    @property
    def sent_address(self) -> str:
        return PERSONAS[self.persona][1] or self.address

    @property
    def sent_agent(self) -> str:
        return PERSONAS[self.persona][2] or self.agent


drafts = st.builds(
    Draft,
    site=st.sampled_from(["a", "a", "b"]),
    persona=st.integers(0, len(PERSONAS) - 1),
    address=st.sampled_from(sorted(ADDRESSES)),
    agent=st.sampled_from(sorted(AGENTS)),
    window=st.integers(0, len(WINDOWS) - 1),
    minute=st.sampled_from(MINUTES),
    event_type=st.sampled_from(["page_view", "page_view", "page_view", "signup", "click"]),
    path=st.sampled_from(PATHS),
    url=st.sampled_from(URLS),
    referrer=st.sampled_from(REFERRERS),
    props=st.sampled_from(PROPS),
    with_id=st.booleans(),
)


@dataclass
class Stored:
    """What the oracle expects the service to have made of one sent event."""

    values: dict[str, str | None]  # every dimension, by name: the event's own and (after sessions) its visit's
    props: dict[str, str]
    visitor: str
    user: str | None
    at: datetime

    def value(self, dimension: str) -> str | None:
        if dimension.startswith("props."):
            return self.props.get(dimension[len("props.") :])
        return self.values[dimension]


@dataclass
class Visit:
    events: list[Stored] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        return self.events[0].at

    @property
    def pageviews(self) -> int:
        return sum(1 for event in self.events if event.values["event_type"] == "page_view")

    @property
    def bounced(self) -> bool:
        return len(self.events) == 1 and self.pageviews == 1

    @property
    def duration(self) -> timedelta:
        return self.events[-1].at - self.events[0].at

    def value(self, dimension: str) -> str | None:
        return self.events[0].values[dimension]


def _bare(host: str | None) -> str | None:
    if host and host.startswith("www."):
        return host[4:]
    return host


def _prop_text(value: Any) -> str:
    """What PostgreSQL's ->> gives for a JSON scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stored_event(draft: Draft, at: datetime) -> Stored:
    page = urlsplit(draft.url) if draft.url else None
    utm: dict[str, str] = {}
    if page is not None:
        for key, value in parse_qsl(page.query):
            utm.setdefault(key, value)
    page_host = _bare(page.hostname) if page is not None else None
    referrer_host = referrer = None
    if draft.referrer:
        parts = urlsplit(draft.referrer)
        if _bare(parts.hostname) != page_host:
            referrer_host = _bare(parts.hostname)
            referrer = f"{parts.scheme}://{parts.netloc}{parts.path}"
    browser, browser_version, os, os_version, device = AGENTS[draft.sent_agent]
    values: dict[str, str | None] = {
        "event_type": draft.event_type,
        "path": draft.path or (page.path if page is not None else None),
        "source": utm.get("utm_source") or referrer_host,
        "referrer": referrer,
        "country": ADDRESSES[draft.sent_address],
        "browser": browser,
        "browser_version": browser_version,
        "os": os,
        "os_version": os_version,
        "device": device,
        **{key: utm.get(key) for key in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")},
    }
    visitor = draft.user if draft.user else f"{draft.sent_address}|{draft.sent_agent}"
    props = {key: _prop_text(value) for key, value in (draft.props or {}).items()}
    return Stored(values, props, f"{draft.site}|{visitor}", draft.user, at)


def sessionize(events: Iterable[Stored]) -> list[Visit]:
    """Split each visitor's events where more than 30 minutes pass; each event learns its visit's dimensions."""
    by_visitor: dict[str, list[Stored]] = {}
    for event in sorted(events, key=lambda event: event.at):
        by_visitor.setdefault(event.visitor, []).append(event)
    visits: list[Visit] = []
    for timeline in by_visitor.values():
        for event in timeline:
            if (
                not visits
                or visits[-1].events[-1].visitor != event.visitor
                or event.at - visits[-1].events[-1].at > VISIT_GAP
            ):
                visits.append(Visit())
            visits[-1].events.append(event)
    for visit in visits:
        pages = [event.values["path"] for event in visit.events if event.values["event_type"] == "page_view"]
        first = visit.events[0].values
        shared = {name: first[name] for name in VISIT_DIMENSIONS if name not in ("entry_page", "exit_page")}
        shared["entry_page"] = pages[0] if pages else None
        shared["exit_page"] = pages[-1] if pages else None
        for event in visit.events:
            event.values.update(shared)
    return visits


def matches(rule: tuple[str, str, tuple[str, ...]], value: str | None) -> bool:
    _, operator, values = rule
    if operator == "~":
        return value is not None and values[0] in value
    listed = (value in values) if value is not None else NONE in values
    return listed if operator == "==" else not listed


def is_event_dimension(dimension: str) -> bool:
    return dimension in EVENT_DIMENSIONS or dimension == "props" or dimension.startswith("props.")


def values_of(event: Stored, prop: str) -> set[str | None]:
    """The breakdown rows an event is in: its value, or by props keys, each key it has."""
    if prop == "props":
        return set(event.props)
    return {event.value(prop)}


def row_rule(prop: str, value: str | None) -> Rule:
    """The filter that makes a breakdown's row from the aggregate."""
    if prop == "props":
        return (f"props.{value}", "!=", (NONE,))
    return (prop, "==", (value if value is not None else NONE,))


def half_away(fraction: Fraction) -> int:
    magnitude = math.floor(abs(fraction) + Fraction(1, 2))
    return magnitude if fraction >= 0 else -magnitude


Rule = tuple[str, str, tuple[str, ...]]


def metrics_of(events: list[Stored], visits: list[Visit], names: Iterable[str]) -> dict[str, int | float]:
    results: dict[str, int | float] = {}
    for name in names:
        if name == "pageviews":
            results[name] = sum(1 for event in events if event.values["event_type"] == "page_view")
        elif name == "events":
            results[name] = len(events)
        elif name == "visitors":
            results[name] = len({event.visitor for event in events})
        elif name == "users":
            results[name] = len({event.user for event in events if event.user is not None})
        elif name == "visits":
            results[name] = len(visits)
        elif name == "bounce_rate":
            bounced = sum(1 for visit in visits if visit.bounced)
            results[name] = half_away(Fraction(100 * bounced, len(visits))) if visits else 0
        elif name == "visit_duration":
            total = sum((visit.duration for visit in visits), timedelta())
            micros = total // timedelta(microseconds=1)
            results[name] = half_away(Fraction(micros, 1_000_000 * len(visits))) if visits else 0
        elif name == "views_per_visit":
            views = sum(visit.pageviews for visit in visits)
            results[name] = half_away(Fraction(100 * views, len(visits))) / 100 if visits else 0.0
    return results


class Oracle:
    def __init__(self, stored: list[Stored]) -> None:
        self.stored = stored
        self.visits = sessionize(stored)

    def site(self, site: str) -> tuple[list[Stored], list[Visit]]:
        prefix = f"{site}|"
        return (
            [event for event in self.stored if event.visitor.startswith(prefix)],
            [visit for visit in self.visits if visit.events[0].visitor.startswith(prefix)],
        )

    def select(
        self, site: str, start: datetime, end: datetime, rules: Iterable[Rule]
    ) -> tuple[list[Stored], list[Visit]]:
        """The events in [start, end) matching every filter, and the visits starting there that the filters keep."""
        rules = list(rules)
        events, visits = self.site(site)
        kept_events = [
            event
            for event in events
            if start <= event.at < end and all(matches(rule, event.value(rule[0])) for rule in rules)
        ]
        event_rules = [rule for rule in rules if is_event_dimension(rule[0])]
        visit_rules = [rule for rule in rules if not is_event_dimension(rule[0])]
        kept_visits = [
            visit
            for visit in visits
            if start <= visit.start < end
            and all(matches(rule, visit.value(rule[0])) for rule in visit_rules)
            and (
                not event_rules
                or any(all(matches(rule, event.value(rule[0])) for rule in event_rules) for event in visit.events)
            )
        ]
        return kept_events, kept_visits

    def aggregate(
        self, site: str, start: datetime, end: datetime, rules: Iterable[Rule], names: Iterable[str]
    ) -> dict[str, int | float]:
        events, visits = self.select(site, start, end, rules)
        return metrics_of(events, visits, names)

    def breakdown(
        self, site: str, start: datetime, end: datetime, rules: list[Rule], prop: str, names: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        events, visits = self.select(site, start, end, rules)
        values: set[str | None] = set()
        if EVENT_METRICS & set(names):
            for event in events:
                values |= values_of(event, prop)
        if VISIT_METRICS & set(names):
            if is_event_dimension(prop):
                event_rules = [rule for rule in rules if is_event_dimension(rule[0])]
                for visit in visits:
                    for event in visit.events:
                        if all(matches(rule, event.value(rule[0])) for rule in event_rules):
                            values |= values_of(event, prop)
            else:
                values |= {visit.value(prop) for visit in visits}
        rows = []
        for value in values:
            row_events, row_visits = self.select(site, start, end, [*rules, row_rule(prop, value)])
            rows.append({prop: value, **metrics_of(row_events, row_visits, names)})
        rows.sort(key=lambda row: (-row[names[0]], row[prop] is None, row[prop] or ""))
        return rows


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """Brute force: the first minute whose local date is `day` (no zone library arithmetic on local times)."""
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=15)
    while moment.astimezone(zone).date() < day:
        moment += timedelta(minutes=1)
    return moment


def local_hour_starts(start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    """Brute force: every minute in [start, end) at which a local hour begins."""
    starts, moment = [], start
    while moment < end:
        if moment.astimezone(zone).minute == 0:
            starts.append(moment)
        moment += timedelta(minutes=1)
    return starts


def series_labels(first: date, last: date, zone: ZoneInfo, interval: str) -> list[tuple[str, datetime]]:
    """Each bucket's label and start, brute force."""
    start, end = day_start(first, zone), day_start(last + timedelta(days=1), zone)
    if interval == "hour":
        return [(moment.astimezone(zone).isoformat(), moment) for moment in local_hour_starts(start, end, zone)]
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    labels: dict[str, datetime] = {}
    for day in days:
        if interval == "day":
            label = day
        elif interval == "week":
            label = day - timedelta(days=day.weekday())
        else:
            label = day.replace(day=1)
        labels.setdefault(label.isoformat(), day_start(day, zone))
    return list(labels.items())


async def fetch(client: httpx.AsyncClient, kind: str, **params: str) -> Any:
    response = await client.get(f"/api/v2/stats/{kind}", params=params)
    assert response.status_code == 200, (kind, params, response.text)
    body = response.json()
    assert body["status"] == "success"
    return body["data"]


def filter_text(rules: Iterable[Rule]) -> str:
    return ";".join(f"{dimension}{operator}{'|'.join(values)}" for dimension, operator, values in rules)


rules_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("path"), st.sampled_from(["==", "!="]), st.sampled_from([("/a", "/b"), (NONE,), ("/é",)])),
        st.tuples(st.just("path"), st.just("~"), st.sampled_from([("b",), ("/",)])),
        st.tuples(st.just("event_type"), st.just("=="), st.just(("signup",))),
        st.tuples(st.just("country"), st.sampled_from(["==", "!="]), st.sampled_from([("US",), ("GB", NONE)])),
        st.tuples(st.just("source"), st.sampled_from(["==", "~"]), st.sampled_from([("google.com",), ("news",)])),
        st.tuples(st.just("entry_page"), st.just("=="), st.sampled_from([("/",), ("/a", NONE)])),
        st.tuples(st.just("props.plan"), st.sampled_from(["==", "!="]), st.just(("pro",))),
        st.tuples(st.just("device"), st.just("=="), st.just(("mobile",))),
    ),
    max_size=2,
)


def bodies(drafts_sent: list[Draft], prefix: str) -> Iterator[tuple[dict[str, Any], Stored]]:
    for number, draft in enumerate(drafts_sent):
        # A distinct microsecond per event: no two events share an instant, so order within a visit is defined.
        at = WINDOWS[draft.window] + timedelta(minutes=draft.minute, microseconds=number)
        body: dict[str, Any] = {
            "site_id": prefix + draft.site,
            "event_type": draft.event_type,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "user_agent": draft.sent_agent,
            "ip": draft.sent_address,
        }
        optional = {
            "path": draft.path,
            "user_id": draft.user,
            "url": draft.url,
            "referrer": draft.referrer,
            "props": draft.props,
            "event_id": f"{prefix}-{number}" if draft.with_id else None,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        yield body, stored_event(draft, at)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sent=st.lists(drafts, min_size=30, max_size=80),
    retried=st.lists(st.integers(0, 79), max_size=6),
    rules=rules_strategy,
)
async def test_every_endpoint_equals_a_brute_force_over_what_was_sent(
    service: httpx.AsyncClient,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    sent: list[Draft],
    retried: list[int],
    rules: list[Rule],
) -> None:
    prefix = f"r{next(example_numbers)}"
    pairs = list(bodies(sent, prefix))
    documents = [body for body, _ in pairs] + [pairs[index][0] for index in retried if index < len(pairs)]
    for offset in range(0, len(documents), 25):
        response = await service.post("/api/ingestion/events", json=documents[offset : offset + 25])
        assert response.status_code == 202, response.text
    oracle = Oracle([stored for _, stored in pairs])

    async def all_stored() -> None:
        count = await db.fetchval("SELECT count(*) FROM events WHERE starts_with(site_id, $1)", prefix)
        assert count == len(pairs)

    await eventually(all_stored)

    sites = sorted({draft.site for draft in sent})
    for site, zone_name in itertools.product(sites, ZONES):
        zone = ZoneInfo(zone_name)
        site_id = prefix + site
        await check_aggregates(service, oracle, site, site_id, zone, rules)
        await check_timeseries(service, oracle, site, site_id, zone, rules)
        await check_breakdowns(service, oracle, site, site_id, zone, rules)
    # The distinct keeper's values of each past UTC day (analytics/stats/values.py), then unfiltered breakdowns again.
    kept = await keep_past_days(pool, KEPT_UNTIL, (KEPT_UNTIL - FULL_RANGE[0]).days)
    assert kept.values > 0
    for site, zone_name in itertools.product(sites, ZONES):
        await check_kept_breakdowns(service, oracle, site, prefix + site, ZoneInfo(zone_name))


def _range(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return day_start(first, zone), day_start(last + timedelta(days=1), zone)


def _custom(first: date, last: date, zone: ZoneInfo) -> dict[str, str]:
    return {"period": "custom", "from": first.isoformat(), "to": last.isoformat(), "timezone": zone.key}


def _change(current: float, previous: float, metric: str) -> float | None:
    if metric == "bounce_rate":
        return current - previous
    if previous == 0:
        return None
    return half_away((Fraction(current) - Fraction(previous)) * 1000 / Fraction(previous)) / 10


async def check_aggregates(
    client: httpx.AsyncClient, oracle: Oracle, site: str, site_id: str, zone: ZoneInfo, rules: list[Rule]
) -> None:
    first, last = COMPARED_RANGE
    start, end = _range(first, last, zone)
    length = last - first + timedelta(days=1)
    before = _range(first - length, last - length, zone)
    for applied in ([], rules):
        data = await fetch(
            client,
            "aggregate",
            site_id=site_id,
            metrics=",".join(METRICS),
            filters=filter_text(applied),
            compare="previous_period",
            **_custom(first, last, zone),
        )
        now = oracle.aggregate(site, start, end, applied, METRICS)
        then = oracle.aggregate(site, *before, applied, METRICS)
        expected = {
            name: {"value": now[name], "previous": then[name], "change": _change(now[name], then[name], name)}
            for name in METRICS
        }
        assert data["results"] == expected, (zone.key, applied)
        assert data["period"] == {"from": first.isoformat(), "to": last.isoformat(), "timezone": zone.key}
        assert data["meta"] == {"approximate": False}


async def check_timeseries(
    client: httpx.AsyncClient, oracle: Oracle, site: str, site_id: str, zone: ZoneInfo, rules: list[Rule]
) -> None:
    cases = [(FULL_RANGE, interval) for interval in ("day", "week", "month")]
    cases += [(span, "hour") for span in HOURLY_RANGES]
    # Unfiltered, every case is answered from the report cells (test_report_cells.py checks that it is); filtered,
    # from raw events.
    for ((first, last), interval), applied in itertools.product(cases, ([], rules) if rules else ([],)):
        labels = series_labels(first, last, zone, interval)
        end = day_start(last + timedelta(days=1), zone)
        bounds = [*(start for _, start in labels), end]
        data = await fetch(
            client,
            "timeseries",
            site_id=site_id,
            metrics=",".join(METRICS),
            interval=interval,
            filters=filter_text(applied),
            **_custom(first, last, zone),
        )
        expected = [
            {"date": label, **oracle.aggregate(site, bounds[index], bounds[index + 1], applied, METRICS)}
            for index, (label, _) in enumerate(labels)
        ]
        assert data["results"] == expected, (zone.key, interval, applied)


async def check_breakdowns(
    client: httpx.AsyncClient, oracle: Oracle, site: str, site_id: str, zone: ZoneInfo, rules: list[Rule]
) -> None:
    first, last = FULL_RANGE
    start, end = _range(first, last, zone)
    # Mixed kinds are merged in Python; one kind is ranked and paged by PostgreSQL (each rounded metric first once).
    metric_sets: tuple[tuple[str, ...], ...] = (
        ("visitors", *METRICS),
        ("visits", "bounce_rate"),
        ("pageviews",),
        ("bounce_rate", "visits"),
        ("visit_duration",),
        ("views_per_visit", "visits"),
        ("users", "events"),
    )
    for prop, names in zip(PROPERTIES, itertools.cycle(metric_sets), strict=False):
        expected = oracle.breakdown(site, start, end, rules, prop, names)
        data = await fetch(
            client,
            "breakdown",
            site_id=site_id,
            property=prop,
            metrics=",".join(dict.fromkeys(names)),
            filters=filter_text(rules),
            limit="1000",
            **_custom(first, last, zone),
        )
        assert data["results"] == [{key: row[key] for key in (prop, *dict.fromkeys(names))} for row in expected], (
            zone.key,
            prop,
            rules,
        )
        assert data["total_rows"] == len(expected)
    paged = await fetch(
        client, "breakdown", site_id=site_id, property="path", limit="2", page="2", **_custom(first, last, zone)
    )
    assert paged["results"] == [
        {key: row[key] for key in ("path", "pageviews", "visitors")}
        for row in oracle.breakdown(site, start, end, [], "path", ("pageviews", "visitors"))[2:4]
    ]


async def check_kept_breakdowns(
    client: httpx.AsyncClient, oracle: Oracle, site: str, site_id: str, zone: ZoneInfo
) -> None:
    """Unfiltered breakdowns in event metrics once the days are kept: whole UTC days from their values, the rest
    from raw events, every page as the oracle ranks it."""
    for (first, last), (prop, names) in itertools.product(
        KEPT_RANGES, zip(KEPT_PROPERTIES, itertools.cycle(KEPT_METRIC_SETS), strict=False)
    ):
        start, end = _range(first, last, zone)
        expected = oracle.breakdown(site, start, end, [], prop, names)
        for limit, page in ((1000, 1), (2, 1), (2, 2)):
            data = await fetch(
                client,
                "breakdown",
                site_id=site_id,
                property=prop,
                metrics=",".join(names),
                limit=str(limit),
                page=str(page),
                **_custom(first, last, zone),
            )
            rows = expected[(page - 1) * limit : page * limit]
            assert data["results"] == [{key: row[key] for key in (prop, *names)} for row in rows], (zone.key, prop)
            assert data["total_rows"] == len(expected)
