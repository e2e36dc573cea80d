"""The tracker in a real browser: headless Chromium loads a page of another origin that embeds `/tracker.js`, and the
page views it sends come out of the stats endpoint, exactly.

Chromium is Debian's (`apt-get install -y chromium`), driven by playwright with `executable_path`: nothing is
downloaded at test time. Without Chromium or playwright the browser tests skip, except under CI (`CI` set), where
they fail instead, so a missing install step cannot pass unnoticed; `.ci/run` sets `CHROMIUM_UNAVAILABLE` to the
reason when it tried to install Chromium and could not, and then they skip with that reason.
"""

from __future__ import annotations

import contextlib
import html
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

import analytics.web
from tests.helpers.servers import serving
from tests.helpers.waiting import eventually

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page
    from playwright.async_api import Request as BrowserRequest

TRACKER = Path(analytics.web.__file__).with_name("static") / "tracker.js"
TRACKER_MAX_BYTES = 2048
JAVASCRIPT_TYPES = {"application/javascript", "text/javascript"}
# Headless, as root, on a machine with no network but loopback: nothing that phones home or needs a GPU.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
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


def unavailable(reason: str) -> NoReturn:
    install_failure = os.environ.get("CHROMIUM_UNAVAILABLE")
    if install_failure:
        pytest.skip(f"{reason}: {install_failure}")
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason)


def chromium_executable() -> str | None:
    return os.environ.get("TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[dev]'")
    executable = chromium_executable()
    if executable is None:
        unavailable("chromium is not installed: apt-get install -y chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


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


def site_app(document: str) -> Starlette:
    """A website on its own origin: the same page for every path under /app/."""

    async def app_page(request: Request) -> Response:
        return HTMLResponse(document)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(routes=[Route("/app/{rest:path}", app_page), Route("/favicon.ico", favicon)])


@dataclass
class Visit:
    """One browser tab, and what it sent to the ingestion endpoint and what went wrong in it."""

    page: Page
    ingest_url: str
    sent: list[BrowserRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("request", self._on_request)
        self.page.on("requestfailed", self._on_request_failed)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", self._on_console)

    def _on_request(self, request: BrowserRequest) -> None:
        if request.url == self.ingest_url:
            self.sent.append(request)

    def _on_request_failed(self, request: BrowserRequest) -> None:
        # DevTools reports the opaque answer to a no-cors fetch (the fallback) as ERR_ABORTED although the server got
        # it; whether the events arrived, the stats tell.
        if request.url != self.ingest_url:
            self.errors.append(f"failed: {request.url} {request.failure}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")


@contextlib.asynccontextmanager
async def visiting(
    browser: Browser, service_url: str, site_id: str | None, user_id: str | None = None, init_script: str | None = None
) -> AsyncIterator[tuple[Visit, str]]:
    """A site on its own origin embedding the service's tracker, and a fresh browser profile with one tab.

    Yields the tab and the site's origin. The tab stays open until the block ends, so no beacon is cut off.
    """
    document = page_html(f"{service_url}/tracker.js", site_id, user_id)
    async with serving(site_app(document)) as origin:
        context = await browser.new_context()
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


def test_the_tracker_fits_in_2_kib() -> None:
    assert TRACKER.stat().st_size <= TRACKER_MAX_BYTES


async def test_the_tracker_is_served_as_javascript(api: httpx.AsyncClient) -> None:
    response = await api.get("/tracker.js")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0].strip() in JAVASCRIPT_TYPES
    assert "cache-control" in response.headers
    assert response.content == TRACKER.read_bytes()
    assert len(response.content) <= TRACKER_MAX_BYTES
