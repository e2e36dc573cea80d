"""Plausible's own tracker, unchanged, in a real Chromium, pointed at this service's `POST /api/event`: what it
sends is stored as the contract's events (DESIGN.md, "Compatible endpoint").

The script is `@plausible-analytics/tracker` from the npm registry, vendored built and unchanged in
`tests/e2e/plausible/` (version, command and sha256 in its README; the sha256 is checked below). It is an ES module:
the page imports it from its own origin and calls its documented `init({domain, endpoint, captureOnLocalhost})`;
`endpoint` is the service's `/api/event` on another origin, as a site pointing Plausible at a self-hosted API does.

Two checks in the script would silence it here, and both sit behind its documented `captureOnLocalhost` option,
which is what these tests set: it ignores pages on `localhost`/`127.x.x.x`/`[::1]`/`file:` (the test site is served
on 127.0.0.1), and it ignores automated browsers (`navigator.webdriver`, true under playwright, `window._phantom`,
`window.__nightmare`, `window.Cypress`). No hostname tricks, no init script, no patch to the tracker.

Headless Chromium says `HeadlessChrome` in its User-Agent, which the service drops as a bot (202, not stored, counted
in `/metrics`): the visits that must be stored use a browser context with the User-Agent a desktop Chrome of the same
version sends; one test keeps the headless one and checks it is counted and not stored.

Chromium, playwright and the skip/fail rules are tests/helpers/browser.py's; `browser` is the e2e conftest's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Mount, Route

from tests.helpers.browser import DESKTOP_CHROME, Visit, site_app
from tests.helpers.servers import serving
from tests.helpers.waiting import eventually

if TYPE_CHECKING:
    from playwright.async_api import Browser
    from playwright.async_api import Request as BrowserRequest

VENDORED: Final = Path(__file__).with_name("plausible")
TRACKER: Final = VENDORED / "plausible.js"
TRACKER_SHA256: Final = "87c0a074995b8d4fb53f34b293d561d6033b7dbdefe107e9788f0b752c719b33"
TRACKER_PATH: Final = "/vendor/plausible.js"
# The query of the landing page: a campaign link from a newsletter.
CAMPAIGN: Final = "utm_source=newsletter&utm_medium=email&utm_campaign=launch"
BOT_METRIC: Final = "analytics_bot_events_total"
STORED_COLUMNS: Final = (
    'event_type, path, user_id, "timestamp", visitor, referrer, source, utm_source, utm_medium, utm_campaign, '
    "utm_term, utm_content, browser, browser_version, os, device, props"
)


def desktop_chrome(browser: Browser) -> str:
    """The User-Agent of a desktop Chrome of the launched Chromium's version (test_browser's)."""
    return DESKTOP_CHROME.format(browser.version)


def page_html(domain: str, endpoint: str) -> str:
    """A page that installs the tracker as its npm README says, and sends a custom event from a button."""
    config = json.dumps({"domain": domain, "endpoint": endpoint, "captureOnLocalhost": True})
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>a shop</title>
<script type="module">
import {{ init, track }} from '{TRACKER_PATH}';
init({config});
document.getElementById('signup').addEventListener('click', () => track('Signup', {{ props: {{ plan: 'pro' }} }}));
</script>
</head><body>
<button id="signup" type="button">Sign up</button>
</body></html>"""


def shop_app(document: str) -> Starlette:
    """test_browser's website (the page under every /app/ path), plus the vendored tracker from the site's own
    origin, as a bundler would ship it."""

    async def tracker(request: Request) -> FileResponse:
        return FileResponse(TRACKER, media_type="text/javascript")

    return Starlette(routes=[Route(TRACKER_PATH, tracker), Mount("", app=site_app(document))])


@contextlib.asynccontextmanager
async def plausible_visit(
    browser: Browser, service_url: str, domain: str, user_agent: str | None
) -> AsyncIterator[tuple[Visit, str]]:
    """A site on its own origin running Plausible's tracker against the service, and a fresh profile with one tab
    (`user_agent` None: Chromium's own, headless one). Yields the tab and the site's origin."""
    endpoint = f"{service_url}/api/event"
    async with serving(shop_app(page_html(domain, endpoint))) as origin:
        context = await browser.new_context(user_agent=user_agent) if user_agent else await browser.new_context()
        try:
            yield Visit(await context.new_page(), endpoint), origin
        finally:
            await context.close()


async def answered(request: BrowserRequest) -> tuple[dict[str, Any], int, dict[str, str]]:
    """What the tracker sent (the JSON body), the service's status, and the request's headers."""
    response = await request.response()
    assert response is not None, f"no response to {request.post_data}"
    body = request.post_data_json
    assert isinstance(body, dict), request.post_data
    return body, response.status, await request.all_headers()


async def sent_bodies(visit: Visit, count: int) -> list[tuple[dict[str, Any], int, dict[str, str]]]:
    async def check() -> list[tuple[dict[str, Any], int, dict[str, str]]]:
        assert len(visit.sent) == count, [request.post_data for request in visit.sent]
        return [await answered(request) for request in visit.sent]

    return await eventually(check, timeout_s=10)


async def stored(db: asyncpg.Connection, domain: str, count: int) -> list[dict[str, Any]]:
    """The site's rows in `events`, in time order, once there are exactly `count`; props decoded."""

    async def check() -> list[dict[str, Any]]:
        rows = await db.fetch(
            f'SELECT {STORED_COLUMNS} FROM events WHERE site_id = $1 ORDER BY "timestamp", id', domain
        )
        assert len(rows) == count, rows
        return [{**row, "props": None if row["props"] is None else json.loads(row["props"])} for row in rows]

    return await eventually(check, timeout_s=10)


async def bot_events(client: httpx.AsyncClient, reason: str) -> float:
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == BOT_METRIC and sample.labels == {"reason": reason}:
                return sample.value
    return 0.0


def test_the_vendored_tracker_is_the_published_file_unchanged() -> None:
    """The sha256 of `npm pack @plausible-analytics/tracker@0.4.6`'s plausible.js, as the README records it."""
    assert hashlib.sha256(TRACKER.read_bytes()).hexdigest() == TRACKER_SHA256
    assert TRACKER_SHA256 in (VENDORED / "README.md").read_text()
    assert "MIT License" in (VENDORED / "LICENSE").read_text()


async def test_page_view_and_custom_event_from_plausibles_tracker_are_stored(
    browser: Browser, service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """Landing from a newsletter link: one page_view (path from the URL, UTM from its query, `domain` the site_id),
    then `track('Signup', {props: {plan: 'pro'}})`: both stored, from one visitor in Chrome. An SPA navigation then
    makes the tracker send the `engagement` of the first page (answered 202, not stored) and the next page view."""
    domain = f"shop-{secrets.token_hex(4)}.example"
    service_url = str(service.base_url).rstrip("/")
    user_agent = desktop_chrome(browser)
    before = datetime.now(UTC)
    async with plausible_visit(browser, service_url, domain, user_agent) as (visit, origin):
        landing = f"{origin}/app/pricing?{CAMPAIGN}"
        await visit.page.goto(landing, referer="http://news.example.org/issue/12?token=secret")
        [page_view] = await stored(db, domain, 1)  # a page load is one page view, before anything else happens

        await visit.page.click("#signup")
        first, signup = await stored(db, domain, 2)
        assert first == page_view

        await visit.page.evaluate("history.pushState({}, '', '/app/checkout')")
        sent = await sent_bodies(visit, 4)
        *_, checkout = await stored(db, domain, 3)
        assert visit.errors == []
    after = datetime.now(UTC)

    # What Plausible's script sent: text/plain JSON (a simple request, no preflight), every one answered 202.
    bodies = [body for body, _, _ in sent]
    assert [body["n"] for body in bodies] == ["pageview", "Signup", "engagement", "pageview"], bodies
    assert {body["d"] for body in bodies} == {domain}
    assert [status for _, status, _ in sent] == [202] * 4
    assert {headers["content-type"].split(";")[0] for _, _, headers in sent} == {"text/plain"}
    assert bodies[1]["p"] == {"plan": "pro"}
    assert bodies[2]["u"] == landing  # the engagement of the landing page

    campaign = {
        "referrer": "http://news.example.org/issue/12",  # stored without its query
        "source": "newsletter",  # utm_source wins over the referrer's host
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_campaign": "launch",
        "utm_term": None,
        "utm_content": None,
    }
    chrome = {
        "browser": "Chrome",
        "browser_version": browser.version.split(".")[0],
        "os": "Linux",
        "device": "desktop",
        "user_id": None,
    }
    assert page_view == {
        "event_type": "page_view",
        "path": "/app/pricing",
        "timestamp": page_view["timestamp"],
        "visitor": page_view["visitor"],
        "props": None,
        **campaign,
        **chrome,
    }
    assert signup == {**page_view, "event_type": "Signup", "timestamp": signup["timestamp"], "props": {"plan": "pro"}}
    # The SPA page's URL has no campaign; document.referrer is still the newsletter's page.
    assert checkout["event_type"] == "page_view"
    assert checkout["path"] == "/app/checkout"
    assert (checkout["utm_source"], checkout["source"]) == (None, "news.example.org")

    visitors = {row["visitor"] for row in (page_view, signup, checkout)}
    assert len(visitors) == 1
    assert None not in visitors
    # The time is the receive time (the body has none).
    assert before <= page_view["timestamp"] <= signup["timestamp"] <= checkout["timestamp"] <= after


async def test_headless_chromiums_user_agent_is_counted_as_a_bot_and_not_stored(
    browser: Browser, service: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """The same page and tracker with Chromium's own `HeadlessChrome` User-Agent: the page view and the custom event
    are answered 202 (so nothing retries) and counted in `analytics_bot_events_total{reason="headless"}`, and never
    stored; an event sent after them by a desktop Chrome to the same site is, alone."""
    domain = f"shop-{secrets.token_hex(4)}.example"
    service_url = str(service.base_url).rstrip("/")
    counted_before = await bot_events(service, "headless")
    async with plausible_visit(browser, service_url, domain, None) as (visit, origin):
        assert "HeadlessChrome" in await visit.page.evaluate("navigator.userAgent")
        await visit.page.goto(f"{origin}/app/pricing?{CAMPAIGN}")
        await visit.page.click("#signup")
        sent = await sent_bodies(visit, 2)
        assert visit.errors == []
    assert [(body["n"], status) for body, status, _ in sent] == [("pageview", 202), ("Signup", 202)]
    assert await bot_events(service, "headless") == counted_before + 2

    # A desktop Chrome's event, sent after the bot's were answered, is written; the bot's are not there.
    later = {"n": "pageview", "u": "http://127.0.0.1/app/later", "d": domain, "r": None}
    response = await service.post(
        "/api/event",
        content=json.dumps(later),
        headers={"content-type": "text/plain", "user-agent": desktop_chrome(browser)},
    )
    assert response.status_code == 202, response.text
    [row] = await stored(db, domain, 1)
    assert (row["event_type"], row["path"], row["browser"]) == ("page_view", "/app/later", "Chrome")
