"""The dashboard in a real browser: headless Chromium opens `/dashboard/<site>` over a designed data set, and what the
page shows is what the v2 API answers, before and after a click-a-row filter; tokens, privacy and layout too.

Chromium, and when these tests skip or fail without it: tests/helpers/browser.py. With `ANALYTICS_SCREENSHOTS=docs`
the desktop screenshot is also written to docs/dashboard.png (the README shows it).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

import analytics.web
from analytics.config import Settings
from analytics.observability.metrics import Metrics
from analytics.queue.pusher import Pusher
from analytics.store.shares import create_share, revoke_share
from analytics.web.access import new_share_token, token_digest
from analytics.writer.loop import Writer
from tests.helpers.browser import DESKTOP_CHROME, Visit
from tests.helpers.factories import CHROME, IPHONE
from tests.helpers.servers import api_app, serving
from tests.helpers.waiting import eventually

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

DOCS = Path(__file__).resolve().parents[2] / "docs"
ASSETS = Path(analytics.web.__file__).with_name("static") / "dashboard"
# The README says 8.8 KB: the budget leaves room to grow, not to double.
GZIPPED_MAX_BYTES = 10_000
ZONE = "Europe/Berlin"
VIEW = {"period": "7d", "date": "2025-03-14", "timezone": ZONE}
HEADLINE = ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration")
KINDS = {"views_per_visit": "plain", "bounce_rate": "percent", "visit_duration": "duration"}
GOOGLE = "https://www.google.com/"
# A path with every character a filter value must escape.
ODD_PATH = "/a;b|c\\d"
NEWS = "https://news.ycombinator.com/item?id=1"
CAMPAIGN = "/?utm_source=newsletter&utm_medium=email&utm_campaign=spring"  # the UTM panels' rows
# (visitor, country, referrer, user agent, UTC time, path, event type): six visitors over the 7 days shown, from
# four sources (one a campaign's UTM) and three countries on two devices, and one visitor in the 7 days before (the
# change against them).
EVENTS = [
    ("alice", "DE", GOOGLE, CHROME, "2025-03-10T09:00:00Z", "/", "page_view"),
    ("alice", "DE", GOOGLE, CHROME, "2025-03-10T09:02:00Z", "/pricing", "page_view"),
    ("alice", "DE", GOOGLE, CHROME, "2025-03-10T09:05:20Z", "/pricing", "Signup"),
    ("bob", "US", NEWS, IPHONE, "2025-03-11T18:00:00Z", "/", "page_view"),
    ("bob", "US", NEWS, IPHONE, "2025-03-11T18:01:00Z", "/blog", "page_view"),
    ("carol", "DE", None, CHROME, "2025-03-12T07:30:00Z", "/pricing", "page_view"),
    ("carol", "DE", None, CHROME, "2025-03-14T12:00:00Z", "/", "page_view"),
    ("dave", "FR", GOOGLE, IPHONE, "2025-03-13T20:00:00Z", "/blog", "page_view"),
    ("dave", "FR", GOOGLE, IPHONE, "2025-03-13T20:04:00Z", "/blog/post", "page_view"),
    ("erin", "US", NEWS, CHROME, "2025-03-14T15:00:00Z", "/", "page_view"),
    ("erin", "US", NEWS, CHROME, "2025-03-14T15:01:00Z", ODD_PATH, "page_view"),
    ("frank", "DE", GOOGLE, CHROME, "2025-03-05T10:00:00Z", "/", "page_view"),
    ("gina", "FR", None, CHROME, "2025-03-12T11:00:00Z", CAMPAIGN, "page_view"),
]
# Every panel of the page, and what its rows count.
PANELS = {
    **dict.fromkeys(
        ("path", "entry_page", "exit_page", "source", "referrer", "utm_source", "utm_medium", "utm_campaign"),
        "visitors",
    ),
    **dict.fromkeys(("country", "device", "browser", "os"), "visitors"),
    "event_type": "events",
    "props": "events",
}
# The props the Properties panel shows: by event (visitor, time).
PROPS = {
    ("alice", "2025-03-10T09:05:20Z"): {"plan": "pro", "seats": 3},
    ("dave", "2025-03-13T20:04:00Z"): {"plan": "free"},
}
Start = Callable[..., AbstractAsyncContextManager[tuple[str, httpx.AsyncClient]]]


@pytest.fixture
def start(pusher: Pusher, pool: asyncpg.Pool, writer: Writer) -> Start:
    """The api app with the given settings (countries from a CDN header) on a real server, and the writer running."""

    @contextlib.asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
        settings = Settings(country_header="cf-ipcountry", geoip_database="none", **overrides)
        app = api_app(pusher, pool, Metrics(), settings)
        async with serving(app, settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            yield base_url, client

    return running


async def ingest(client: httpx.AsyncClient, site_id: str, token: str | None = None) -> None:
    """Sends the data set (one batch per country: the country comes from the CDN's header) and waits until stored."""
    for country in sorted({row[1] for row in EVENTS}):
        batch = [
            {
                "site_id": site_id,
                "event_type": event_type,
                "timestamp": timestamp,
                "url": f"https://shop.example{path}",
                "referrer": referrer,
                "user_id": visitor,
                "user_agent": agent,
                "props": PROPS.get((visitor, timestamp)),
            }
            for visitor, where, referrer, agent, timestamp, path, event_type in EVENTS
            if where == country
        ]
        response = await client.post("/api/ingestion/events", json=batch, headers={"cf-ipcountry": country})
        assert response.status_code == 202, response.text

    async def stored() -> None:
        answer = await report(client, "aggregate", site_id, token, period="all", metrics="events")
        assert answer["results"]["events"]["value"] == len(EVENTS)

    await eventually(stored, timeout_s=10)


async def report(
    client: httpx.AsyncClient, kind: str, site_id: str, token: str | None = None, **params: str
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.get(f"/api/v2/stats/{kind}", params={"site_id": site_id, **params}, headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def shown(metric: str, value: float) -> str:
    """What the page prints for a value (the numbers of this data set are all under 1000)."""
    kind = KINDS.get(metric, "count")
    if kind == "percent":
        return f"{value}%"
    if kind == "duration":
        seconds = round(value)
        return f"{seconds}s" if seconds < 60 else f"{seconds // 60}m {seconds % 60}s"
    return f"{value:g}"


async def headline(page: Page) -> dict[str, tuple[float, str]]:
    tiles = await page.eval_on_selector_all(
        "#metrics .metric",
        "tiles => tiles.map(t => [t.dataset.metric, t.dataset.value, t.querySelector('.value').textContent])",
    )
    return {metric: (float(value), text) for metric, value, text in tiles}


async def expected_headline(
    client: httpx.AsyncClient, site_id: str, token: str | None = None, **params: str
) -> dict[str, tuple[float, str]]:
    query = {**VIEW, "metrics": ",".join(HEADLINE), **params}
    answer = await report(client, "aggregate", site_id, token, **query)
    return {
        metric: (answer["results"][metric]["value"], shown(metric, answer["results"][metric]["value"]))
        for metric in HEADLINE
    }


async def panel(page: Page, property: str) -> list[tuple[str, int]]:
    rows = await page.eval_on_selector_all(
        f"[data-property='{property}'] .row",
        "rows => rows.map(r => [r.dataset.value, r.querySelector('.count').dataset.count])",
    )
    return [(value, int(count)) for value, count in rows]


async def expected_panel(
    client: httpx.AsyncClient, site_id: str, property: str, metric: str = "visitors", **params: str
) -> list[tuple[str, int]]:
    answer = await report(client, "breakdown", site_id, **{**VIEW, "property": property, "metrics": metric, **params})
    return [("(none)" if row[property] is None else row[property], row[metric]) for row in answer["results"]]


async def rendered(page: Page) -> None:
    """The report is on screen and no request for it is pending."""
    await page.wait_for_selector("#report:not([hidden])[aria-busy='false']")


Opened = Callable[..., AbstractAsyncContextManager[tuple["Page", httpx.AsyncClient, str, str]]]


@pytest.fixture
def opened(browser: Browser, start: Start) -> Opened:
    """What most tests start from: the api with the given settings, the data set ingested for a new site (with the
    given token), and a desktop tab; yields the tab, a client of the api, its URL and the site."""

    @contextlib.asynccontextmanager
    async def opening(
        token: str | None = None, site_id: str | None = None, **settings: Any
    ) -> AsyncIterator[tuple[Page, httpx.AsyncClient, str, str]]:
        site = site_id or f"dash-{secrets.token_hex(4)}"
        async with start(**settings) as (base_url, client):
            await ingest(client, site, token)
            context = await browser.new_context(user_agent=DESKTOP_CHROME.format(browser.version))
            try:
                yield await context.new_page(), client, base_url, site
            finally:
                await context.close()

    return opening


def dashboard_url(base_url: str, site_id: str, **params: str) -> str:
    return f"{base_url}/dashboard/{site_id}?{httpx.QueryParams({**VIEW, **params})}"


async def chart_buckets(page: Page) -> tuple[str | None, list[str]]:
    interval = await page.get_attribute("#chart", "data-interval")
    return interval, ((await page.get_attribute("#chart", "data-buckets")) or "").split()


async def expected_buckets(client: httpx.AsyncClient, site_id: str, **params: str) -> tuple[str, list[str]]:
    answer = await report(client, "timeseries", site_id, **{**VIEW, **params})
    return answer["interval"], [row["date"] for row in answer["results"]]


async def test_the_dashboard_shows_what_the_api_answers(browser: Browser, start: Start, tmp_path: Path) -> None:
    site_id = "shop.example"  # each test has a database of its own; this name is the one the README shows
    async with start() as (base_url, client):
        await ingest(client, site_id)
        context = await browser.new_context(
            user_agent=DESKTOP_CHROME.format(browser.version), viewport={"width": 1280, "height": 900}
        )
        requested: list[str] = []
        context.on("request", lambda request: requested.append(request.url))
        try:
            visit = Visit(await context.new_page(), f"{base_url}/api/ingestion/event")
            page = visit.page

            await page.goto(f"{base_url}/dashboard")
            await page.click(f"#sites a:text-is('{site_id}')")
            await page.wait_for_url(f"{base_url}/dashboard/{site_id}?*")

            await page.goto(dashboard_url(base_url, site_id))
            await rendered(page)
            assert await page.locator("#sign-in").is_hidden()  # no tokens configured: open
            assert await headline(page) == await expected_headline(client, site_id)
            for property in ("path", "source", "referrer", "utm_source", "utm_campaign", "country", "entry_page"):
                assert await panel(page, property) == await expected_panel(client, site_id, property)
            assert (await panel(page, "source"))[0] == ("google.com", 2)
            assert (
                await page.text_content("[data-property='source'] .row[data-value='(none)'] .name") == "Direct / None"
            )
            assert await page.text_content("[data-property='country'] .row[data-value='DE'] .name") == "Germany"
            visitors_change = await page.get_attribute("[data-metric='visitors'] .change", "data-change")
            assert visitors_change == "500"  # six visitors against one the week before
            assert await page.locator("#chart svg polyline").count() == 2
            await page.screenshot(path=tmp_path / "dashboard-1280.png", full_page=True)
            if os.environ.get("ANALYTICS_SCREENSHOTS") == "docs":
                shutil.copyfile(tmp_path / "dashboard-1280.png", DOCS / "dashboard.png")

            await page.click("[data-property='source'] .row[data-value='google.com']")
            await rendered(page)
            assert parse_qs(urlsplit(page.url).query)["filters"] == ["source==google.com"]
            assert await page.locator("#filters .chip[data-filter='source==google.com']").is_visible()
            assert await headline(page) == await expected_headline(client, site_id, filters="source==google.com")
            for property, metric in PANELS.items():  # every panel is filtered
                assert await panel(page, property) == await expected_panel(
                    client, site_id, property, metric, filters="source==google.com"
                ), property
            assert await chart_buckets(page) == await expected_buckets(client, site_id, filters="source==google.com")
            assert await panel(page, "path") == [("/", 1), ("/blog", 1), ("/blog/post", 1), ("/pricing", 1)]

            await page.reload()  # the view is in the URL
            await rendered(page)
            assert await headline(page) == await expected_headline(client, site_id, filters="source==google.com")

            await page.focus("#filters .chip")  # the controls are buttons: the keyboard works them
            await page.keyboard.press("Enter")
            await rendered(page)
            assert "filters" not in parse_qs(urlsplit(page.url).query)
            assert await page.locator("#filters .chip").count() == 0
            assert await headline(page) == await expected_headline(client, site_id)

            assert await panel(page, "props") == [("plan", 2), ("seats", 1)]
            assert await panel(page, "props") == await expected_panel(client, site_id, "props", "events")
            await page.click("[data-property='props'] .row[data-value='plan']")  # a key opens its values
            await rendered(page)
            assert await panel(page, "props.plan") == [("free", 1), ("pro", 1)]
            assert await panel(page, "props.plan") == await expected_panel(
                client, site_id, "props.plan", "events", filters="props.plan!=(none)"
            )
            await page.click("[data-property='props.plan'] .row[data-value='pro']")  # and a value filters
            await rendered(page)
            assert parse_qs(urlsplit(page.url).query)["filters"] == ["props.plan==pro"]
            assert await headline(page) == await expected_headline(client, site_id, filters="props.plan==pro")
            assert await panel(page, "event_type") == await expected_panel(
                client, site_id, "event_type", "events", filters="props.plan==pro"
            )
            await page.click("#filters .chip")
            await page.click("[data-property='props.plan'] .back")
            await rendered(page)
            assert await page.locator("[data-property='props'] .row").count() == 2

            await page.set_viewport_size({"width": 375, "height": 812})
            assert await page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing wider than a phone
            await page.screenshot(path=tmp_path / "dashboard-375.png", full_page=True)
            # A CSP violation would be a console error. The reload may cut off the live count's request: not an error.
            assert [error for error in visit.errors if not error.endswith("net::ERR_ABORTED")] == []
        finally:
            await context.close()
    assert requested
    for url in requested:
        parts = urlsplit(url)
        assert parts.scheme == "data" or parts.hostname == "127.0.0.1", url


async def test_the_period_picker_and_an_empty_period(opened: Opened) -> None:
    async with opened() as (page, client, base_url, site_id):
        await page.goto(dashboard_url(base_url, site_id))
        await rendered(page)
        week = await expected_buckets(client, site_id)
        assert week == ("day", [f"2025-03-{day:02d}" for day in range(8, 15)])
        assert await chart_buckets(page) == week
        await page.select_option("#period", "day")
        await rendered(page)
        assert parse_qs(urlsplit(page.url).query)["period"] == ["day"]
        assert await headline(page) == await expected_headline(client, site_id, period="day")
        hours = await expected_buckets(client, site_id, period="day")
        assert (hours[0], len(hours[1]), hours[1][0]) == ("hour", 24, "2025-03-14T00:00:00+01:00")
        assert await chart_buckets(page) == hours

        await page.fill("#timezone", "Asia/Kathmandu")
        await page.click("#controls button[type=submit]")
        await rendered(page)
        assert parse_qs(urlsplit(page.url).query)["timezone"] == ["Asia/Kathmandu"]
        kathmandu = await expected_buckets(client, site_id, period="day", timezone="Asia/Kathmandu")
        assert kathmandu[1][0] == "2025-03-14T00:00:00+05:45"
        assert await chart_buckets(page) == kathmandu
        assert await headline(page) == await expected_headline(client, site_id, period="day", timezone="Asia/Kathmandu")

        await page.select_option("#period", "custom")
        await page.fill("#from", "2024-01-01")
        await page.fill("#to", "2024-01-31")
        await page.click("#controls button[type=submit]")
        await rendered(page)
        query = parse_qs(urlsplit(page.url).query)
        assert (query["period"], query["from"], query["to"]) == (["custom"], ["2024-01-01"], ["2024-01-31"])
        assert await page.text_content("#status") == "no data for this period"
        assert await page.locator("[data-property='path'] .empty").text_content() == "no data for this period"


async def test_a_value_with_filter_syntax_in_it_is_escaped(opened: Opened) -> None:
    async with opened() as (page, client, base_url, site_id):
        await page.goto(dashboard_url(base_url, site_id))
        await rendered(page)
        await page.locator("[data-property='path'] .row").filter(has_text=ODD_PATH).click()
        await rendered(page)
        escaped = "path==/a\\;b\\|c\\\\d"
        assert parse_qs(urlsplit(page.url).query)["filters"] == [escaped]
        assert await page.text_content("#filters .chip") == f"path is {ODD_PATH} ✕"
        expected = await expected_headline(client, site_id, filters=escaped)
        assert expected["pageviews"] == (1.0, "1")
        assert await headline(page) == expected


async def test_an_unreachable_or_unavailable_api_is_said_in_words(browser: Browser, start: Start) -> None:
    """The network failing and a 503 are simulated in the tab (the API's own 503 is tested in tests/integration)."""
    site_id = f"dash-{secrets.token_hex(4)}"
    unavailable = '{"status":"error","message":"database unavailable"}'
    async with start() as (base_url, _client):
        context = await browser.new_context()
        try:
            page = await context.new_page()
            await page.goto(dashboard_url(base_url, site_id))
            await rendered(page)
            await page.route("**/api/v2/**", lambda route: route.abort())
            await page.select_option("#period", "day")
            await page.wait_for_selector("#status.error")
            assert "cannot be reached" in (await page.text_content("#status") or "")

            await page.unroute("**/api/v2/**")
            await page.route("**/api/v2/**", lambda route: route.fulfill(status=503, body=unavailable))
            await page.select_option("#period", "month")
            await page.wait_for_selector("#status.error:has-text('503')")
            assert "not answering" in (await page.text_content("#status") or "")
        finally:
            await context.close()


async def test_the_viewers_time_zone_is_the_default(browser: Browser, start: Start) -> None:
    site_id = f"dash-{secrets.token_hex(4)}"
    async with start() as (base_url, _client):
        context = await browser.new_context(timezone_id="America/Sao_Paulo")
        try:
            page = await context.new_page()
            await page.goto(f"{base_url}/dashboard/{site_id}")
            await rendered(page)
            assert parse_qs(urlsplit(page.url).query)["timezone"] == ["America/Sao_Paulo"]
            assert await page.input_value("#timezone") == "America/Sao_Paulo"
        finally:
            await context.close()


async def test_with_tokens_the_dashboard_asks_for_one(opened: Opened) -> None:
    async with opened("right-token", api_tokens=("right-token",)) as (page, client, base_url, site_id):
        await page.goto(dashboard_url(base_url, site_id))
        await page.wait_for_selector("#sign-in:not([hidden])")
        assert await page.locator("#sign-in-error").is_hidden()

        await page.fill("#token", "wrong-token")
        await page.click("#sign-in button[type=submit]")
        await page.wait_for_selector("#sign-in-error:not([hidden])")
        assert await page.text_content("#sign-in-error") == "token not accepted"
        assert await page.locator("#report").is_hidden()

        await page.fill("#token", "right-token")
        await page.click("#sign-in button[type=submit]")
        await rendered(page)
        assert await headline(page) == await expected_headline(client, site_id, "right-token")
        assert await page.locator("#sign-in").is_hidden()
        assert "token" not in page.url
        assert await page.evaluate("sessionStorage.getItem('analytics.token')") == "right-token"

        await page.goto(f"{base_url}/dashboard")  # the same tab keeps its token
        await page.wait_for_selector(f"#sites a:text-is('{site_id}')")


async def test_a_share_link_shows_its_site_without_a_token_until_revoked(opened: Opened, pool: asyncpg.Pool) -> None:
    site_id = f"dash-{secrets.token_hex(4)}"
    token = new_share_token()
    link = await create_share(pool, site_id, token_digest(token))
    async with opened("operator", site_id, api_tokens=("operator",)) as (page, client, base_url, _):
        await page.goto(f"{base_url}/share/{token}?{httpx.QueryParams(VIEW)}")
        await rendered(page)
        assert await page.locator("#sign-in").is_hidden()
        assert await page.text_content("#site-name") == site_id
        assert await headline(page) == await expected_headline(client, site_id, "operator")
        assert await page.evaluate("sessionStorage.getItem('analytics.token')") is None

        await page.click("[data-property='country'] .row[data-value='DE']")
        await rendered(page)
        assert urlsplit(page.url).path == f"/share/{token}"  # a filtered view of a link is a link too
        assert parse_qs(urlsplit(page.url).query)["filters"] == ["country==DE"]
        assert await headline(page) == await expected_headline(client, site_id, "operator", filters="country==DE")

        await revoke_share(pool, link.id)
        await page.reload()
        await page.wait_for_selector("#status.error")
        assert "share link does not work" in (await page.text_content("#status") or "")
        assert await page.locator("#report").is_hidden()
        assert await page.locator("#sign-in").is_hidden()


async def test_a_panel_shows_more_rows_ten_at_a_time(browser: Browser, start: Start) -> None:
    site_id = f"dash-{secrets.token_hex(4)}"
    paths = [f"/page-{n:02d}" for n in range(23)]
    async with start() as (base_url, client):
        batch = [
            {
                "site_id": site_id,
                "event_type": "page_view",
                "timestamp": f"2025-03-14T10:{n:02d}:00Z",
                "url": f"https://shop.example{path}",
                "user_id": f"reader-{n % 5}",
                "user_agent": CHROME,
            }
            for n, path in enumerate(paths)
        ]
        assert (await client.post("/api/ingestion/events", json=batch)).status_code == 202

        async def stored() -> None:
            answer = await report(client, "aggregate", site_id, period="all", metrics="pageviews")
            assert answer["results"]["pageviews"]["value"] == len(paths)

        await eventually(stored, timeout_s=10)
        expected = await expected_panel(client, site_id, "path", limit="1000")
        assert len(expected) == len(paths)
        context = await browser.new_context(user_agent=DESKTOP_CHROME.format(browser.version))
        try:
            page = await context.new_page()
            await page.goto(dashboard_url(base_url, site_id))
            await rendered(page)
            more = page.locator("[data-property='path'] .more")
            assert await panel(page, "path") == expected[:10]
            await more.click()
            await page.locator("[data-property='path'] .row").nth(19).wait_for()
            assert await panel(page, "path") == expected[:20]
            await more.click()
            await page.locator("[data-property='path'] .row").nth(22).wait_for()
            assert await panel(page, "path") == expected
            assert await more.is_hidden()
            assert await page.locator("[data-property='country'] .more").is_hidden()  # one row: nothing more
        finally:
            await context.close()


# WCAG 2's contrast ratio of an element's text against the nearest opaque background behind it.
CONTRASTS = """() => {
  const rgb = (css) => css.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => [r, g, b].map((c) => c / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4))
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (element) => {
    for (let e = element; e; e = e.parentElement) {
      const color = rgb(getComputedStyle(e).backgroundColor);
      if (color.length === 3 || color[3] === 1) return color.slice(0, 3);
    }
    return [255, 255, 255];
  };
  return [...document.querySelectorAll('#report *, header *')]
    .filter((e) => e.getClientRects().length && [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim()))
    .map((e) => {
      const style = getComputedStyle(e);
      const ink = rgb(e instanceof SVGElement ? style.fill : style.color).slice(0, 3);
      const [a, b] = [luminance(ink), luminance(background(e))];
      return [`${e.tagName}.${e.className.baseVal ?? e.className}`, e.textContent.trim().slice(0, 20),
        (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
    });
}"""


async def test_every_text_has_accessible_contrast(opened: Opened) -> None:
    """WCAG AA: 4.5:1 for text (the chart's small labels included), measured on the rendered page."""
    async with opened() as (page, _client, base_url, site_id):
        await page.goto(dashboard_url(base_url, site_id, filters="country==DE"))
        await rendered(page)
        measured = await page.evaluate(CONTRASTS)
    assert len(measured) > 50
    assert {kind.split(".")[0] for kind, _, _ in measured} >= {"STRONG", "SPAN", "BUTTON", "H2", "text"}
    low = [(kind, text, round(ratio, 2)) for kind, text, ratio in measured if ratio < 4.5]
    assert low == []


async def test_the_page_and_its_assets_are_served_with_a_strict_policy(start: Start) -> None:
    async with start() as (_base_url, client):
        page = await client.get("/dashboard/some-site")
        shared = await client.get("/share/share_abc")
        script = await client.get("/dashboard/assets/dashboard.js")
        style = await client.get("/dashboard/assets/dashboard.css")
        unknown = await client.get("/dashboard/assets/other.js")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert (shared.content, shared.headers["referrer-policy"]) == (page.content, "no-referrer")
    assert script.headers["content-type"].startswith("application/javascript")
    assert style.headers["content-type"].startswith("text/css")
    assert unknown.status_code == 404
    for response in (page, script, style):
        assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in response.text


def test_the_dashboard_stays_small() -> None:
    gzipped = sum(len(gzip.compress(asset.read_bytes(), 9)) for asset in ASSETS.iterdir())
    assert gzipped <= GZIPPED_MAX_BYTES
