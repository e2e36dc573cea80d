"""Debian's Chromium driven by playwright for the browser tests: how it is launched, when the tests skip or fail
without it, a site on its own origin, and what a tab sent.

Chromium is Debian's (`apt-get install -y chromium`), driven by playwright with `executable_path`: nothing is
downloaded at test time. Without Chromium or playwright the browser tests skip, except under CI (`CI` set), where
they fail instead, so a missing install step cannot pass unnoticed; `.ci/run` sets `CHROMIUM_UNAVAILABLE` to the
reason when it tried to install Chromium and could not, and then they skip with that reason.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Page
    from playwright.async_api import Request as BrowserRequest

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
# Headless Chromium says `HeadlessChrome` in its User-Agent, and the service drops headless browsers' events as bots:
# the tests' tabs present themselves as the desktop Chrome they are.
DESKTOP_CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{} Safari/537.36"


def unavailable(reason: str) -> NoReturn:
    install_failure = os.environ.get("CHROMIUM_UNAVAILABLE")
    if install_failure:
        pytest.skip(f"{reason}: {install_failure}")
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason)


def chromium_executable() -> str | None:
    return os.environ.get("TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


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
