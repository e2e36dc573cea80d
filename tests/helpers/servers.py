"""The api in the test's own process: the app wired as `serve --role api` wires it, on a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial

import asyncpg
import httpx
from starlette.types import ASGIApp

from analytics.config import Settings
from analytics.observability.metrics import Metrics
from analytics.queue.client import ping, snapshot
from analytics.queue.pusher import Pusher
from analytics.store.connect import ping_database
from analytics.web.access import AccessRules
from analytics.web.app import App, Ingestion, create_app
from analytics.web.health import Readiness
from analytics.web.ingest import Enrichment
from analytics.web.server import Server, server_config

# `client_with(**settings)`: an HTTP client to a real server running the api app with those settings.
Client = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def api_app(pusher: Pusher, pool: asyncpg.Pool, metrics: Metrics, settings: Settings | None = None) -> App:
    """The api role's app, as `analytics serve --role api` wires it without STATS_DATABASE_URL, around the given
    pusher and pool."""
    settings = settings or Settings()
    redis, keys = pusher.client, pusher.keys
    readiness = Readiness({"redis": partial(ping, redis), "postgresql": partial(ping_database, pool)}, ["redis"])
    rules = AccessRules.from_settings(settings)
    enrichment = Enrichment.from_settings(settings, redis, keys)
    ingestion = Ingestion(pusher, enrichment, pool, pool, settings.max_body_bytes, settings.max_batch_events, rules)
    return create_app(metrics, readiness, partial(snapshot, redis, keys), ingestion)


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, settings: Settings | None = None) -> AsyncIterator[str]:
    """Serve `app` with a real uvicorn on a free loopback port, configured as `serve` does; yield its base URL."""
    settings = settings or Settings()
    server = Server(
        server_config(
            app, "127.0.0.1", 0, settings.header_timeout_s, settings.body_timeout_s, settings.max_header_bytes
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
