"""`analytics` command line: parse, wire the roles together, run. No logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine, Iterator, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, Final, NoReturn

import asyncpg
import msgspec
import uvloop

from analytics import logs
from analytics.access import AccessRules
from analytics.config import ConfigError, Role, Settings, describe, load_settings
from analytics.db import create_pool, migrate, ping_database
from analytics.embedded import POSTGRESQL, VALKEY, Access, Backend, EmbeddedError, Kind, embedded_server, running
from analytics.events import EPOCH, decode_record
from analytics.http import Ingestion, Readiness, create_app
from analytics.metrics import Metrics
from analytics.queue import DeadLetter, DeadLetters, Pusher, QueueKeys, WriterQueue, connect_redis, ping, snapshot
from analytics.server import Server, server_config
from analytics.writer import Writer, new_writer_id

logger = logging.getLogger("analytics")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How often `serve` checks that the embedded servers it started still run.
WATCH_INTERVAL_S: Final = 0.5
# asyncpg's Pool.close() waits for every connection to be released; past this, they are cut.
POOL_CLOSE_TIMEOUT_S: Final = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analytics", description=__doc__)
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="settings file (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the api, the writer, or both")
    serve.add_argument("--role", choices=[role.value for role in Role], help=describe("role"))
    serve.add_argument("--host", help=describe("host"))
    serve.add_argument("--port", help=describe("port"))
    serve.add_argument(
        "--no-migrate", dest="migrate", action="store_false", default=None, help=describe("migrate") + "; skip it"
    )
    commands.add_parser("migrate", help="apply pending database migrations and exit")
    dead = commands.add_parser("dead-letters", help="inspect or operate the records the writer could not store")
    dead.add_argument("action", choices=["list", "requeue", "purge"], help="list them, send them back, or drop them")
    dead.add_argument("--limit", type=int, default=100, help="most entries `list` prints (default: %(default)s)")
    return parser


def _fail(message: str, code: int) -> NoReturn:
    print(f"analytics: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _backend(settings: Settings, kind: Kind, access: Access) -> Iterator[Backend]:
    """The configured server, or the data dir's embedded one (see `embedded_server` for `access`)."""
    configured = settings.database_url if kind is POSTGRESQL else settings.redis_url
    if configured:
        yield Backend(kind, configured)
    else:
        with embedded_server(settings.data_dir, kind, access) as backend:
            yield backend


@contextlib.contextmanager
def _listening(host: str, port: int) -> Iterator[list[socket.socket]]:
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


async def _first_to_exit(backends: Sequence[Backend]) -> Backend:
    """The first embedded server this process started to exit; never returns while they all run."""
    watched = {backend: backend.pid for backend in backends if backend.pid is not None}
    while True:
        for backend, pid in watched.items():
            if not running(pid):
                return backend
        await asyncio.sleep(WATCH_INTERVAL_S)


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Bounded: a connection stuck on a dead or frozen PostgreSQL must not hold up the rest of the shutdown."""
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        pool.terminate()


async def _run_roles(
    settings: Settings, database: Backend, redis_backend: Backend, sockets: list[socket.socket]
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    previous_handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    redis = connect_redis(redis_backend.url)
    keys = QueueKeys(settings.redis_prefix)
    metrics = Metrics()
    tasks: dict[str, asyncio.Task[Any]] = {}
    writers: list[Writer] = []
    pusher: Pusher | None = None
    pool = await create_pool(database.url, settings.db_pool_size if settings.role.runs_api else 1)
    try:
        ingestion = None
        if settings.role.runs_api:
            pusher = Pusher(redis, keys, settings.queue_max_length)
            rules = AccessRules.from_settings(settings)
            rules.warn_if_open()
            ingestion = Ingestion(pusher, pool, settings.max_body_bytes, settings.max_batch_events, rules)
        # Ingestion needs only Redis; a writer needs PostgreSQL too.
        required = ("redis", "postgresql") if settings.role.runs_writer else ("redis",)
        readiness = Readiness({"redis": partial(ping, redis), "postgresql": partial(ping_database, pool)}, required)
        app = create_app(metrics, readiness, partial(snapshot, redis, keys), ingestion)
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
        tasks["http"] = asyncio.create_task(server.serve(sockets))
        if settings.role.runs_writer:
            for lane in range(settings.writer_concurrency):
                queue = WriterQueue(redis, keys, new_writer_id(), settings.heartbeat_ttl_s)
                writers.append(Writer(settings, database.url, queue, metrics))
                tasks[f"writer {lane}"] = asyncio.create_task(writers[-1].run())
        code = await _until_stopped(stop, tasks, [database, redis_backend])
        # Order matters: the api finishes in-flight requests (their pushes included) before the writer stops.
        server.should_exit = True
        await _settle(tasks["http"])
        if pusher is not None:
            await pusher.drain()
        for writer in writers:
            writer.stop()
        for name, task in tasks.items():
            if name.startswith("writer"):
                await _settle(task)
        return code
    finally:
        for signum, handler in previous_handlers.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, handler)
        await _close_pool(pool)
        await redis.aclose()


async def _until_stopped(stop: asyncio.Event, tasks: dict[str, asyncio.Task[Any]], backends: Sequence[Backend]) -> int:
    """Wait for a stop signal, a role that ends, or an embedded server that dies; say which; return the exit code."""
    stopper = asyncio.create_task(stop.wait())
    watcher = asyncio.create_task(_first_to_exit(backends))
    done, _ = await asyncio.wait([stopper, watcher, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    watcher.cancel()
    failed = [name for name, task in tasks.items() if task.done()]
    if watcher in done:
        died = watcher.result()
        logger.error(
            "embedded %s (pid %s) exited unexpectedly: stopping the service; a supervisor should restart it",
            died.kind.name,
            died.pid,
        )
        return 1
    if failed:
        logger.error("%s stopped unexpectedly; shutting down", ", ".join(failed))
        return 1
    logger.info("stopping")
    return 0


async def _settle(task: asyncio.Task[Any]) -> None:
    """Wait for a role's task; its failure is already logged by the role, or reported by `_run_roles`."""
    with contextlib.suppress(Exception, SystemExit):
        await task
    if task.done() and not task.cancelled() and task.exception() is not None:
        logger.error("role failed: %r", task.exception())


def _serve(settings: Settings) -> int:
    with (
        _listening(settings.host, settings.port) as sockets,
        _backend(settings, POSTGRESQL, Access.EXCLUSIVE) as database,
        _backend(settings, VALKEY, Access.EXCLUSIVE) as redis,
    ):
        if settings.migrate:
            migrate(database.url)
        logger.info("serving role %s on %s", settings.role.value, ", ".join(_url(sock) for sock in sockets))
        return _run(_run_roles(settings, database, redis, sockets))


def _run(main: Coroutine[Any, Any, int]) -> int:
    """The one place an event loop is started."""
    return uvloop.run(main)


def _dead_letter_json(letter: DeadLetter) -> str:
    entry: dict[str, Any] = {"failed_at": letter.failed_at.isoformat(), "reason": letter.reason}
    try:
        site_id, event_type, path, user_id, microseconds, _ = decode_record(letter.data)
        entry["event"] = {
            "site_id": site_id,
            "event_type": event_type,
            "path": path,
            "user_id": user_id,
            "timestamp": (EPOCH + timedelta(microseconds=microseconds)).isoformat(),
        }
    except (msgspec.DecodeError, OverflowError):
        entry["data_base64"] = base64.b64encode(letter.data).decode()
    return json.dumps(entry, ensure_ascii=False)


async def _dead_letters(redis_url: str, prefix: str, action: str, limit: int) -> int:
    redis = connect_redis(redis_url)
    try:
        dead = DeadLetters(redis, QueueKeys(prefix))
        if action == "list":
            for letter in await dead.read(limit):
                print(_dead_letter_json(letter))
        elif action == "requeue":
            print(f"requeued {await dead.requeue()} record(s)")
        else:
            print(f"purged {await dead.purge()} record(s)")
    finally:
        await redis.aclose()
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    # A flag is its environment twin with the last word: one parser, one validation, one kind of error message.
    flags = {
        "ANALYTICS_ROLE": getattr(args, "role", None),
        "HOST": getattr(args, "host", None),
        "PORT": getattr(args, "port", None),
        "ANALYTICS_MIGRATE": None if getattr(args, "migrate", None) is None else "false",
    }
    environ = {**os.environ, **{name: value for name, value in flags.items() if value is not None}}
    try:
        settings = load_settings(environ, env_file=args.env_file)
    except ConfigError as error:
        _fail(str(error), 2)
    logs.configure(settings.log_level, settings.log_format)
    # Until the event loop installs its own handlers, SIGTERM must still unwind the stack so embedded servers stop.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        if args.command == "migrate":
            with _backend(settings, POSTGRESQL, Access.SHARED) as database:
                applied = migrate(database.url)
            print(f"applied {len(applied)} migration(s)" if applied else "database is up to date")
            code = 0
        elif args.command == "dead-letters":
            with _backend(settings, VALKEY, Access.SHARED_EXISTING) as redis:
                code = _run(_dead_letters(redis.url, settings.redis_prefix, args.action, args.limit))
        else:
            code = _serve(settings)
    except KeyboardInterrupt:
        code = 130
    except ConfigError as error:
        _fail(str(error), 2)
    except (OSError, EmbeddedError) as error:
        _fail(str(error), 1)
    raise SystemExit(code)
