"""The tracker in a real browser: headless Chromium loads a page of another origin that embeds `/tracker.js`, and the
page views it sends come out of the stats endpoint, exactly.

Chromium, and when these tests skip or fail without it: tests/helpers/browser.py.
"""

from __future__ import annotations

import contextlib
import html
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

import analytics.web
from tests.helpers.browser import DESKTOP_CHROME, Visit, site_app
from tests.helpers.servers import serving
from tests.helpers.waiting import eventually

if TYPE_CHECKING:
    from playwright.async_api import Browser

TRACKER = Path(analytics.web.__file__).with_name("static") / "tracker.js"
TRACKER_MAX_BYTES = 2048
JAVASCRIPT_TYPES = {"application/javascript", "text/javascript"}
# The page's own scripts: a SPA link, and a button that changes the URL but not the path (which sends nothing).
PAGE_SCRIPT = """
document.getElementById('spa').addEventListener('click', (e) => {
  e.preventDefault();
  history.pushState({}, '', e.currentTarget.getAttribute('href'));
});
document.getElementById('same-path').addEventListener('click', () => {
  history.pushState({}, '', location.pathname + '?tab=2');
  history.replaceState({}, '', location.pathname + '?tab=3#top');
});
"""
# Makes the browser look like one without navigator.sendBeacon, so the tracker falls back to fetch.
NO_SEND_BEACON = "delete Navigator.prototype.sendBeacon;"


def page_html(tracker_url: str, site_id: str | None, user_id: str | None) -> str:
    attributes = f'src="{html.escape(tracker_url)}"'
    if site_id is not None:
        attributes += f' data-site-id="{html.escape(site_id)}"'
    if user_id is not None:
        attributes += f' data-user-id="{html.escape(user_id)}"'
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>a site</title>
<script defer {attributes}></script>
</head><body>
<a id="spa" href="/app/second">second page</a> <button id="same-path" type="button">same path</button>
<script>{PAGE_SCRIPT}</script>
</body></html>"""


@contextlib.asynccontextmanager
async def visiting(
    browser: Browser, service_url: str, site_id: str | None, user_id: str | None = None, init_script: str | None = None
) -> AsyncIterator[tuple[Visit, str]]:
    """A site on its own origin embedding the service's tracker, and a fresh browser profile with one tab.

    Yields the tab and the site's origin. The tab stays open until the block ends, so no beacon is cut off.
    """
    document = page_html(f"{service_url}/tracker.js", site_id, user_id)
    async with serving(site_app(document)) as origin:
        context = await browser.new_context(user_agent=DESKTOP_CHROME.format(browser.version))
        try:
            if init_script is not None:
                await context.add_init_script(init_script)
            yield Visit(await context.new_page(), f"{service_url}/api/ingestion/event"), origin
        finally:
            await context.close()


def today() -> str:
    return datetime.now(UTC).date().isoformat()


async def stats_with_views(client: httpx.AsyncClient, site_id: str, views: int) -> dict[str, Any]:
    """Today's stats for the site, once they count exactly `views` page views."""

    async def check() -> dict[str, Any]:
        response = await client.get("/api/reporting/stats", params={"site_id": site_id, "date": today()})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        assert data["total_views"] == views, data
        return data

    return await eventually(check, timeout_s=10)


@pytest.mark.parametrize(
    ("init_script", "transport"), [(None, "ping"), (NO_SEND_BEACON, "fetch")], ids=["sendBeacon", "fetch-fallback"]
)
async def test_page_views_of_a_browsing_session_reach_the_stats(
    browser: Browser, service: httpx.AsyncClient, init_script: str | None, transport: str
) -> None:
    """Load, one SPA navigation (plus a same-path URL change that sends nothing), one full navigation: 3 views."""
    site_id = f"browser-{secrets.token_hex(6)}"
    service_url = str(service.base_url).rstrip("/")
    async with visiting(browser, service_url, site_id, "visitor-1", init_script) as (visit, origin):
        await visit.page.goto(f"{origin}/app/first")
        await stats_with_views(service, site_id, 1)  # the first page's view is in before anything else happens

        await visit.page.click("#same-path")
        await visit.page.click("#spa")
        assert visit.page.url == f"{origin}/app/second"
        await stats_with_views(service, site_id, 2)

        await visit.page.goto(f"{origin}/app/third")
        data = await stats_with_views(service, site_id, 3)

        assert data == {
            "site_id": site_id,
            "date": today(),
            "total_views": 3,
            "unique_users": 1,
            "top_paths": [
                {"path": "/app/first", "views": 1},
                {"path": "/app/second", "views": 1},
                {"path": "/app/third", "views": 1},
            ],
        }
        assert [request.method for request in visit.sent] == ["POST"] * 3
        assert [request.resource_type for request in visit.sent] == [transport] * 3
        for request in visit.sent:
            content_type = (await request.all_headers())["content-type"]
            assert content_type.startswith("text/plain"), content_type  # a simple request: no CORS preflight
        assert visit.errors == []


async def test_history_back_window_user_id_and_manual_track(browser: Browser, service: httpx.AsyncClient) -> None:
    """popstate sends a view; `window.analyticsUserId` is read at each send; `analytics.track()` always sends."""
    site_id = f"browser-{secrets.token_hex(6)}"
    service_url = str(service.base_url).rstrip("/")
    async with visiting(browser, service_url, site_id) as (visit, origin):
        await visit.page.goto(f"{origin}/app/home")  # anonymous: user_id null
        await stats_with_views(service, site_id, 1)
        await visit.page.evaluate("window.analyticsUserId = 'signed-in-42'; history.pushState({}, '', '/app/away')")
        await stats_with_views(service, site_id, 2)
        await visit.page.go_back()
        assert visit.page.url == f"{origin}/app/home"
        await stats_with_views(service, site_id, 3)
        await visit.page.evaluate("window.analytics.track()")
        data = await stats_with_views(service, site_id, 4)

        assert data["unique_users"] == 1
        assert data["top_paths"] == [{"path": "/app/home", "views": 3}, {"path": "/app/away", "views": 1}]
        assert len(visit.sent) == 4
        assert visit.errors == []


async def test_without_a_site_id_the_tracker_does_nothing(browser: Browser, api: httpx.AsyncClient) -> None:
    service_url = str(api.base_url).rstrip("/")
    async with visiting(browser, service_url, None, "visitor-1") as (visit, origin):
        await visit.page.goto(f"{origin}/app/first")  # returns after the load event: the deferred tracker has run
        await visit.page.click("#spa")
        assert await visit.page.evaluate("typeof window.analytics") == "undefined"
        assert "[native code]" in await visit.page.evaluate("history.pushState.toString()")
        assert visit.sent == []
        assert visit.errors == []


async def test_a_user_id_over_the_contract_limit_is_cut_not_refused(
    browser: Browser, service: httpx.AsyncClient
) -> None:
    """Every beacon of a page whose user id is too long used to be a silent 400: the tracker cuts it to 256."""
    site_id = f"browser-{secrets.token_hex(6)}"
    service_url = str(service.base_url).rstrip("/")
    async with visiting(browser, service_url, site_id, "u" * 300) as (visit, origin):
        await visit.page.goto(f"{origin}/app/first")
        data = await stats_with_views(service, site_id, 1)
        assert data["unique_users"] == 1
        assert visit.errors == []


async def test_what_the_tracker_sends_is_stored_with_its_source_device_and_props(
    browser: Browser, service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """A visit from a link in a newsletter campaign, then a custom event with props: what the service stored.

    Over the fetch fallback: DevTools does not show a beacon's body, and the test reads what was sent too.
    """
    site_id = f"browser-{secrets.token_hex(6)}"
    service_url = str(service.base_url).rstrip("/")
    async with visiting(browser, service_url, site_id, "visitor-1", NO_SEND_BEACON) as (visit, origin):
        landing = f"{origin}/app/pricing?utm_source=newsletter&utm_campaign=launch#plans"
        await visit.page.goto(landing, referer="https://news.example.org/post?id=7")
        await visit.page.evaluate("window.analytics.track('Signup', {plan: 'pro', seats: 3, trial: false})")

        async def both_stored() -> list[asyncpg.Record]:
            rows = await db.fetch('SELECT * FROM events WHERE site_id = $1 ORDER BY "timestamp"', site_id)
            assert len(rows) == 2
            return rows

        page_view, signup = await eventually(both_stored, timeout_s=10)
        sent = [json.loads(request.post_data or "null") for request in visit.sent]
        assert visit.errors == []

    assert [body["event_type"] for body in sent] == ["page_view", "Signup"]
    for body in sent:
        assert body["url"] == landing
        assert body["referrer"] == "https://news.example.org/post?id=7"
        assert body["sent_at"] == body["timestamp"]
        assert uuid.UUID(body["event_id"])
    assert [row["event_id"] for row in (page_view, signup)] == [body["event_id"] for body in sent]
    for row in (page_view, signup):
        assert row["path"] == "/app/pricing"
        assert (row["source"], row["utm_source"], row["utm_campaign"]) == ("newsletter", "newsletter", "launch")
        assert row["referrer"] == "https://news.example.org/post"
        assert (row["browser"], row["browser_version"]) == ("Chrome", browser.version.split(".")[0])
        assert (row["os"], row["device"]) == ("Linux", "desktop")
        assert (row["user_id"], row["visitor"]) == ("visitor-1", "visitor-1")
        assert abs(row["timestamp"] - datetime.now(UTC)) < timedelta(minutes=1)
    assert page_view["event_type"] == "page_view"
    assert page_view["props"] is None
    assert (signup["event_type"], json.loads(signup["props"])) == (
        "Signup",
        {"plan": "pro", "seats": 3, "trial": False},
    )


def test_the_tracker_fits_in_2_kib() -> None:
    assert TRACKER.stat().st_size <= TRACKER_MAX_BYTES


async def test_the_tracker_is_served_as_javascript(api: httpx.AsyncClient) -> None:
    response = await api.get("/tracker.js")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0].strip() in JAVASCRIPT_TYPES
    assert "cache-control" in response.headers
    assert response.content == TRACKER.read_bytes()
    assert len(response.content) <= TRACKER_MAX_BYTES
