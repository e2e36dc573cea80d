"""The composition root: which servers a command talks to, the roles of `serve` wired together, started in order,
watched, and stopped in the reverse order. The CLI parses and calls in here; nothing else builds roles.

`serve`'s life, as uvicorn's: startup (sockets bound, backends up, migrations, roles started), the main loop (until a
signal, a role that ends, or an embedded server that dies), shutdown (api first, so in-flight requests and their
pushes finish, then the writers, then the connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar

import asyncpg
import uvloop

from analytics.config import ConfigError, Durability, Role, Settings
from analytics.dev.embedded import POSTGRESQL, VALKEY, Access, Backend, Kind, embedded_server, running
from analytics.errors import QueueUnavailable
from analytics.events.contract import SITE_ID_MAX, USER_ID_MAX
from analytics.observability import logs
from analytics.observability.logs import describe_error
from analytics.observability.metrics import Metrics, multiprocess_collection
from analytics.queue.client import check_durability, ping, snapshot
from analytics.queue.connection import Redis, connect_redis
from analytics.queue.consumer import WriterQueue
from analytics.queue.dead_letters import DeadLetter, DeadLetters
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import Pusher
from analytics.stats.keeper import DistinctKeeper
from analytics.store.connect import create_pool, ping_database
from analytics.store.erasure import Erasure, erase_site, erase_user
from analytics.store.events import EventStore
from analytics.store.migrations import migrate
from analytics.store.shares import ShareLink, create_share, list_shares, revoke_share
from analytics.web.access import AccessRules, new_share_token, token_digest
from analytics.web.app import Ingestion, create_app
from analytics.web.health import Readiness
from analytics.web.ingest import Enrichment
from analytics.web.server import Server, server_config
from analytics.workers import supervise
from analytics.writer.loop import Writer, new_writer_id
from analytics.writer.slices import Slices

logger = logging.getLogger("analytics")

T = TypeVar("T")

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
# How often `serve` checks that the embedded servers it started still run.
WATCH_INTERVAL_S: Final = 0.5
# The start-up check of ANALYTICS_DURABILITY gives up on a Redis silent this long (the api starts all the same).
DURABILITY_CHECK_TIMEOUT_S: Final = 2.0
# asyncpg's Pool.close() waits for every connection to be released; past this, they are cut.
POOL_CLOSE_TIMEOUT_S: Final = 5.0


def run(main: Coroutine[Any, Any, T]) -> T:
    """The one place an event loop is started."""
    return uvloop.run(main)


@contextlib.contextmanager
def backend(settings: Settings, kind: Kind, access: Access) -> Iterator[Backend]:
    """The configured server, or the data dir's embedded one (see `embedded_server` for `access`)."""
    configured = settings.database_url if kind is POSTGRESQL else settings.redis_url
    if kind is VALKEY and settings.redis_cluster and not configured:
        raise ConfigError("ANALYTICS_REDIS_CLUSTER needs REDIS_URL naming a node of the cluster")
    if configured:
        yield Backend(kind, configured)
    else:
        with embedded_server(settings.data_dir, kind, access) as started:
            yield started


@contextlib.contextmanager
def listening(host: str, port: int) -> Iterator[list[socket.socket]]:
    """The HTTP sockets, bound before anything starts: a port in use or a bad HOST is one line, not a half-started
    service. Every address the host resolves to, as uvicorn (asyncio's create_server) would bind them."""
    sockets: list[socket.socket] = []
    try:
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, kind, protocol, _, address in dict.fromkeys(addresses):
                sockets.append(socket.socket(family, kind, protocol))
                sockets[-1].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sockets[-1].setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sockets[-1].bind(address)
        except OSError as error:
            raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(settings: Settings) -> int:
    """`analytics serve`: returns the exit code."""
    _check_workers(settings)
    with (
        listening(settings.host, settings.port) as sockets,
        backend(settings, POSTGRESQL, Access.EXCLUSIVE) as database,
        backend(settings, VALKEY, Access.EXCLUSIVE) as redis,
    ):
        if settings.migrate:
            migrate(database.url)
        logger.info("serving role %s on %s", settings.role.value, ", ".join(_url(sock) for sock in sockets))
        if settings.workers > 1:
            return _serve_workers(settings, database, redis, sockets)
        return run(Service(settings, database, redis, sockets).run())


def _check_workers(settings: Settings) -> None:
    """More than one process serves the api role only. A writer scales by its lanes (ANALYTICS_WRITER_CONCURRENCY)
    and by more writer processes, anywhere; `all` is the one-process setup, and N copies of it would silently run N
    times the writer lanes asked for."""
    if settings.workers > 1 and settings.role is not Role.API:
        raise ConfigError(
            f"ANALYTICS_WORKERS: {settings.workers} workers need ANALYTICS_ROLE=api (--role api), got "
            f"{settings.role.value}; writers scale with ANALYTICS_WRITER_CONCURRENCY and more `serve --role writer`"
        )


def _serve_workers(settings: Settings, database: Backend, redis: Backend, sockets: list[socket.socket]) -> int:
    """`serve --workers N`: this process has bound the sockets, started the embedded servers and migrated, once;
    N worker processes each run the api role on those sockets (`_api_worker`), and this one supervises them
    (`analytics.workers`) and watches the embedded servers it started. Their metrics are collected across processes
    (`analytics.observability.metrics`), so any worker's /metrics answers for all."""
    worker = partial(_api_worker, settings, database.url, redis.url, sockets)
    with multiprocess_collection():
        return supervise(settings.workers, worker, sockets, partial(_embedded_exit, (database, redis)))


def _api_worker(settings: Settings, database_url: str, redis_url: str, sockets: list[socket.socket], index: int) -> int:
    """One worker of `serve --workers N`, in its own process: the api role as a single `serve` runs it (its own
    Redis client, pusher and PostgreSQL pool; SIGTERM finishes its requests and drains its pushes). The embedded
    servers are the parent's to watch. Returns the exit code."""
    logs.configure(settings.log_level, settings.log_format, worker=index)
    try:
        return run(Service(settings, Backend(POSTGRESQL, database_url), Backend(VALKEY, redis_url), sockets).run())
    except ConfigError as error:
        logger.error("%s", error)
        return 2


def _embedded_exit(backends: Sequence[Backend]) -> str | None:
    """Why to stop: an embedded server this process started has exited; None while they all run."""
    for started in backends:
        if started.pid is not None and not running(started.pid):
            return f"embedded {started.kind.name} (pid {started.pid}) exited unexpectedly"
    return None


def apply_migrations(settings: Settings) -> list[str]:
    """`analytics migrate`: the migrations applied."""
    with backend(settings, POSTGRESQL, Access.SHARED) as database:
        return migrate(database.url)


def dead_letters(settings: Settings, action: str, limit: int) -> list[tuple[int, DeadLetter]] | int:
    """`analytics dead-letters`: the letters listed with their shards, or how many were requeued or purged, over
    every shard that may hold records."""

    async def operate(redis_url: str) -> list[tuple[int, DeadLetter]] | int:
        client = connect_redis(redis_url, settings.redis_cluster)
        try:
            letters = DeadLetters(client, QueueKeys(settings.redis_prefix), settings.queue_shards)
            if action == "list":
                return await letters.read(limit)
            return await (letters.requeue() if action == "requeue" else letters.purge())
        finally:
            await client.aclose()

    with backend(settings, VALKEY, Access.SHARED_EXISTING) as redis:
        return run(operate(redis.url))


def _on_database(settings: Settings, operate: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run one operator command against the (migrated) database, as `migrate` reaches it."""

    async def with_pool(url: str) -> T:
        pool = await create_pool(url, 1)
        try:
            return await operate(pool)
        finally:
            await _close_pool(pool)

    with backend(settings, POSTGRESQL, Access.SHARED) as database:
        if settings.migrate:
            migrate(database.url)
        return run(with_pool(database.url))


def create_share_link(settings: Settings, site_id: str) -> tuple[ShareLink, str]:
    """`analytics share create`: the new link and its token, which is stored only as a digest (shown once)."""
    if not site_id or len(site_id) > SITE_ID_MAX:
        raise ConfigError(f"a site id is 1 to {SITE_ID_MAX} characters")
    if settings.sites and site_id not in settings.sites:
        raise ConfigError(f"site {site_id!r} is not one of ANALYTICS_SITES")
    token = new_share_token()
    link = _on_database(settings, lambda pool: create_share(pool, site_id, token_digest(token)))
    logger.info("share link %d created for site %r", link.id, link.site_id)
    return link, token


def share_links(settings: Settings) -> list[ShareLink]:
    """`analytics share list`: every link ever created, revoked ones included."""
    return _on_database(settings, list_shares)


def revoke_share_link(settings: Settings, share_id: int) -> ShareLink | None:
    """`analytics share revoke`: the link as revoked, or None when there is no such link. Idempotent."""
    link = _on_database(settings, lambda pool: revoke_share(pool, share_id))
    if link is not None:
        logger.info("share link %d of site %r revoked (at %s)", link.id, link.site_id, link.revoked_at)
    return link


def erase(settings: Settings, site_id: str, user_id: str | None) -> Erasure:
    """`analytics erase`: a user's events on a site (or, with no user, the whole site) and what was counted from them,
    removed while the service runs. Logged once, with the counts and a digest in place of the user id."""
    if not site_id or len(site_id) > SITE_ID_MAX:
        raise ConfigError(f"a site id is 1 to {SITE_ID_MAX} characters")
    if user_id is not None and not 0 < len(user_id) <= USER_ID_MAX:
        raise ConfigError(f"a user id is 1 to {USER_ID_MAX} characters")
    if user_id is None:
        erasure = _on_database(settings, lambda pool: erase_site(pool, site_id))
    else:
        erasure = _on_database(settings, lambda pool: erase_user(pool, site_id, user_id))
    logger.info(
        erasure.summary(),
        extra={
            "site_id": erasure.site_id,
            "user_sha256": erasure.user_digest,
            "events": erasure.events,
            "page_views": erasure.page_views,
            "visits": erasure.visits,
            "share_links": erasure.share_links,
        },
    )
    return erasure


@dataclass
class _Roles:
    """What `Service` started, for the main loop to watch and the shutdown to stop."""

    server: Server
    http: asyncio.Task[None]
    pusher: Pusher | None
    writers: list[Writer]
    writer_tasks: list[asyncio.Task[None]]
    keeper: DistinctKeeper | None
    keeper_task: asyncio.Task[None] | None

    def background(self) -> list[asyncio.Task[None]]:
        """The tasks that stop when asked to: the writer lanes and the distinct keeper."""
        return [*self.writer_tasks, *([self.keeper_task] if self.keeper_task is not None else [])]


class Service:
    """The roles of one `serve` process."""

    def __init__(self, settings: Settings, database: Backend, redis: Backend, sockets: list[socket.socket]) -> None:
        self._settings = settings
        self._database = database
        self._redis = redis
        self._sockets = sockets
        self._stop = asyncio.Event()

    async def run(self) -> int:
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(self._signals())
            client = connect_redis(self._redis.url, self._settings.redis_cluster)
            stack.push_async_callback(client.aclose)
            if self._settings.role.runs_api:
                await _check_durability(client, self._settings.durability)
            size = self._settings.db_pool_size if self._settings.role.runs_api else 1
            pool = await create_pool(self._database.url, size)
            stack.push_async_callback(_close_pool, pool)
            rollup_pool = pool
            if self._settings.role.runs_api and self._settings.stats_database_url is not None:
                rollup_pool = await create_pool(self._settings.stats_database_url, size)
                stack.push_async_callback(_close_pool, rollup_pool)
            roles = self._start(client, pool, rollup_pool)
            # Everything built so far lives as long as the process: out of the collector's way, so a full collection
            # scans only what requests allocate (single-event p99 under wrk went from 29-58 ms back to 17-24 ms).
            gc.freeze()
            code = await self._until_stopped(roles)
            await self._shut_down(roles)
        return code

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._stop.set)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, handler)

    def _start(self, client: Redis, pool: asyncpg.Pool, rollup_pool: asyncpg.Pool) -> _Roles:
        """`rollup_pool` is STATS_DATABASE_URL's (a logical replica of the rollup tables), or `pool` when unset: only
        reads of those tables go there (v1 stats, the site list); the rest needs the primary (`web.reporting`)."""
        settings = self._settings
        keys = QueueKeys(settings.redis_prefix)
        metrics = Metrics()
        pusher = None
        ingestion = None
        if settings.role.runs_api:
            pusher = Pusher(client, keys, settings.queue_max_length, settings.durability, shards=settings.queue_shards)
            rules = AccessRules.from_settings(settings)
            rules.warn_if_open()
            enrichment = Enrichment.from_settings(settings, client, keys)
            ingestion = Ingestion(
                pusher, enrichment, pool, rollup_pool, settings.max_body_bytes, settings.max_batch_events, rules
            )
        # Ingestion needs only Redis; a writer needs PostgreSQL too. The replica is reported, never required.
        required = ("redis", "postgresql") if settings.role.runs_writer else ("redis",)
        checks = {"redis": partial(ping, client), "postgresql": partial(ping_database, pool)}
        if rollup_pool is not pool:
            checks["postgresql_stats"] = partial(ping_database, rollup_pool)
        readiness = Readiness(checks, required)
        app = create_app(metrics, readiness, partial(snapshot, client, keys, settings.queue_shards), ingestion)
        server = Server(
            server_config(
                app,
                settings.host,
                settings.port,
                settings.header_timeout_s,
                settings.body_timeout_s,
                settings.max_header_bytes,
            )
        )
        http = asyncio.create_task(server.serve(self._sockets), name="http")
        lanes = settings.writer_concurrency if settings.role.runs_writer else 0
        slices = Slices([EventStore(self._database.url, settings.retention_days) for _ in range(lanes)])
        writers = [
            Writer(
                settings,
                slices,
                WriterQueue(client, keys, new_writer_id(), settings.heartbeat_ttl_s, settings.queue_shards),
                metrics,
            )
            for _ in range(lanes)
        ]
        writer_tasks = [asyncio.create_task(writer.run(), name=f"writer {lane}") for lane, writer in enumerate(writers)]
        keeper = DistinctKeeper(pool) if settings.role.runs_writer else None
        keeper_task = asyncio.create_task(keeper.run(), name="distinct keeper") if keeper is not None else None
        return _Roles(server, http, pusher, writers, writer_tasks, keeper, keeper_task)

    async def _until_stopped(self, roles: _Roles) -> int:
        """Wait for a stop signal, a role that ends, or an embedded server that dies; say which; the exit code."""
        stopper = asyncio.create_task(self._stop.wait())
        watcher = asyncio.create_task(_first_to_exit([self._database, self._redis]))
        tasks = [roles.http, *roles.background()]
        done, _ = await asyncio.wait([stopper, watcher, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        watcher.cancel()
        if watcher in done:
            died = watcher.result()
            logger.error(
                "embedded %s (pid %s) exited unexpectedly: stopping the service; a supervisor should restart it",
                died.kind.name,
                died.pid,
            )
            return 1
        failed = [task.get_name() for task in tasks if task.done()]
        if failed:
            logger.error("%s stopped unexpectedly; shutting down", ", ".join(failed))
            return 1
        logger.info("stopping")
        return 0

    @staticmethod
    async def _shut_down(roles: _Roles) -> None:
        """The api finishes in-flight requests (their pushes included) before the writers stop."""
        roles.server.should_exit = True
        await _settle(roles.http)
        if roles.pusher is not None:
            await roles.pusher.drain()
        for writer in roles.writers:
            writer.stop()
        if roles.keeper is not None:
            roles.keeper.stop()
        for task in roles.background():
            await _settle(task)


async def _check_durability(client: Redis, durability: Durability) -> None:
    """Refuse to start with a durability the server can never confirm (`ConfigError`). A Redis that cannot be reached
    now is no reason to refuse: the api starts as with any durability, and no push is answered 202 unconfirmed."""
    try:
        warning = await asyncio.wait_for(check_durability(client, durability), DURABILITY_CHECK_TIMEOUT_S)
    except (QueueUnavailable, TimeoutError) as error:
        logger.warning("durability %s not checked, Redis unavailable: %s", durability, describe_error(error))
    else:
        if warning is not None:
            logger.warning("durability %s: %s", durability, warning)


async def _first_to_exit(backends: Sequence[Backend]) -> Backend:
    """The first embedded server this process started to exit; never returns while they all run."""
    watched = {started: started.pid for started in backends if started.pid is not None}
    while True:
        for started, pid in watched.items():
            if not running(pid):
                return started
        await asyncio.sleep(WATCH_INTERVAL_S)


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Bounded: a connection stuck on a dead or frozen PostgreSQL must not hold up the rest of the shutdown."""
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        pool.terminate()


async def _settle(task: asyncio.Task[Any]) -> None:
    """Wait for a role's task; its failure is already logged by the role, or reported by the main loop."""
    with contextlib.suppress(Exception, SystemExit):
        await task
    if task.done() and not task.cancelled() and task.exception() is not None:
        logger.error("role failed: %r", task.exception())
