"""The dashboard: one static page (HTML, CSS, JS under static/dashboard/) that reads the v2 API from the browser, and
the small API it needs besides the reports, the list of sites.

The page holds no data and no secret: the browser asks the API with the bearer token the viewer typed in, or with the
token of the share link it was opened by (`/share/<token>`: that one site, read-only, until an operator revokes it),
so the dashboard is exactly as private as the API. Every asset is served from here under a Content-Security-Policy that
allows nothing else: no CDN (privacy, offline installs) and no inline script an injected value could become.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from analytics.errors import DatabaseError
from analytics.store.sites import sites_with_data
from analytics.web.asgi import JSONResponse
from analytics.web.deadlines import within
from analytics.web.reporting import STATS_DEADLINE_S, Grant, Reporting
from analytics.web.responses import SiteList, SitesFound

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is tiny and changes with each release: always revalidated, never stale after an upgrade.
    "Cache-Control": "no-cache",
}
ASSET_TYPES: Final = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "application/javascript; charset=utf-8",
}


class Dashboard:
    """The page (one document for the picker, a site's view and a share link's view: the script tells them apart by
    path) and its assets, read once at start; and `GET /api/v2/sites` with the reports' tokens and 503 (a share link
    lists its own site only)."""

    def __init__(self, reporting: Reporting, configured_sites: frozenset[str] | None) -> None:
        self._reporting = reporting
        self._configured = sorted(configured_sites) if configured_sites else None
        folder = resources.files("analytics.web").joinpath("static", "dashboard")
        self._page = folder.joinpath("index.html").read_bytes()
        self._assets = {name: folder.joinpath(name).read_bytes() for name in ASSET_TYPES}

    async def page(self, request: Request) -> Response:
        return Response(self._page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self._assets:
            raise HTTPException(404)
        return Response(self._assets[name], media_type=ASSET_TYPES[name], headers=PAGE_HEADERS)

    async def sites(self, request: Request) -> Response:
        grant = await self._reporting.grant(request)
        if not isinstance(grant, Grant):
            return grant
        if grant.site_id is not None:
            return JSONResponse(SitesFound(data=SiteList([grant.site_id])))
        if self._configured is not None:
            return JSONResponse(SitesFound(data=SiteList(self._configured)))
        try:
            sites = await within(STATS_DEADLINE_S, sites_with_data(self._reporting.rollup_pool))
        except (DatabaseError, TimeoutError) as error:
            return self._reporting.unavailable(error)
        self._reporting.recovered()
        return JSONResponse(SitesFound(data=SiteList(sites)))
