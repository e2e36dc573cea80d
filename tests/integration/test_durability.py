"""ANALYTICS_DURABILITY against real servers: a Valkey primary (append-only) with one replica, both this module's own
(the replica is stopped with SIGSTOP), plus Valkeys that cannot confirm an fsync, for the start-up refusals."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from analytics.config import ConfigError, Durability
from analytics.errors import NotConfirmed
from analytics.queue.client import check_durability
from analytics.queue.connection import connect_redis
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import PUSH_CHUNK, Pusher
from tests.helpers.backends import ValkeyServer
from tests.helpers.waiting import eventually

PAUSE_S = 0.3  # how long the replica is stopped while a push waits for it
SHORT_DEADLINE_S = 0.5  # the pushers that are meant to fail get a shorter deadline than the service's 1 s


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    server = ValkeyServer(tmp_path_factory.mktemp("durability-primary"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory, primary: ValkeyServer) -> Iterator[ValkeyServer]:
    directory = tmp_path_factory.mktemp("durability-replica")
    server = ValkeyServer(directory, "--appendonly", "no", "--replicaof", "127.0.0.1", str(primary.port))
    server.start()
    yield server
    os.kill(server.pid, signal.SIGCONT)  # in case a failed test left it stopped
    server.stop()


def standalone(tmp_path_factory: pytest.TempPathFactory, *options: str) -> Iterator[ValkeyServer]:
    server = ValkeyServer(tmp_path_factory.mktemp("durability-standalone"), *options)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def without_aof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    yield from standalone(tmp_path_factory, "--appendonly", "no")


@pytest.fixture(scope="module")
def without_waitaof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """What a Redis before 7.2 answers to WAITAOF: unknown command."""
    yield from standalone(tmp_path_factory, "--rename-command", "WAITAOF", "")


@pytest.fixture
async def client(primary: ValkeyServer, replica: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    connected = connect_redis(primary.url)

    async def replica_in_sync() -> None:
        info = await connected.info("replication")
        assert info["connected_slaves"] == 1
        assert info["slave0"]["state"] == "online"

    await eventually(replica_in_sync, timeout_s=10)
    yield connected
    await connected.aclose()


@pytest.fixture
async def on_replica(replica: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    connected = connect_redis(replica.url)
    yield connected
    await connected.aclose()


@pytest.fixture
def keys() -> QueueKeys:
    return QueueKeys(f"test-{secrets.token_hex(6)}")


def records(count: int) -> list[bytes]:
    return [f"record {number}".encode() for number in range(count)]


async def calls(client: aioredis.Redis, command: str) -> int:
    """How often the server has run `command` since it started (INFO commandstats)."""
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.mark.parametrize("count", [10, PUSH_CHUNK * 2 + 500], ids=["one RPUSH", "MULTI of three RPUSHes"])
async def test_replica_mode_returns_only_once_the_replica_holds_the_push(
    client: aioredis.Redis, on_replica: aioredis.Redis, replica: ValkeyServer, keys: QueueKeys, count: int
) -> None:
    pusher = Pusher(client, keys, 10**9, Durability.REPLICA)
    os.kill(replica.pid, signal.SIGSTOP)
    resume = asyncio.get_running_loop().call_later(PAUSE_S, os.kill, replica.pid, signal.SIGCONT)
    try:
        started = time.monotonic()
        await pusher.push(records(count))
        waited = time.monotonic() - started
        assert await on_replica.llen(keys.queue) == count
    finally:
        resume.cancel()
        os.kill(replica.pid, signal.SIGCONT)
    assert waited >= PAUSE_S * 0.9, "push() returned while the replica could not have acknowledged it"


async def test_a_stopped_replica_is_a_503_within_the_deadline_and_the_next_push_succeeds_once_it_runs(
    client: aioredis.Redis, on_replica: aioredis.Redis, replica: ValkeyServer, keys: QueueKeys
) -> None:
    pusher = Pusher(client, keys, 10**9, Durability.REPLICA, deadline_s=SHORT_DEADLINE_S)
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(NotConfirmed, match="no replica acknowledged it"):
            await pusher.push(records(5))
        waited = time.monotonic() - started
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    assert waited < SHORT_DEADLINE_S
    assert await client.llen(keys.queue) == 5, "the primary holds what it could not confirm: the writer stores it"
    await pusher.push(records(3))
    assert await on_replica.llen(keys.queue) == 8


async def test_fsync_mode_waits_for_the_fsync_of_each_push(client: aioredis.Redis, keys: QueueKeys) -> None:
    assert await check_durability(client, Durability.FSYNC) is None
    pusher = Pusher(client, keys, 10**9, Durability.FSYNC)
    before = await calls(client, "waitaof")
    await pusher.push(records(10))
    await pusher.push(records(PUSH_CHUNK + 1))
    assert await calls(client, "waitaof") - before == 2
    assert await client.llen(keys.queue) == 10 + PUSH_CHUNK + 1


async def test_fsync_mode_is_a_503_where_the_server_never_fsyncs(client: aioredis.Redis, keys: QueueKeys) -> None:
    pusher = Pusher(client, keys, 10**9, Durability.FSYNC, deadline_s=SHORT_DEADLINE_S)
    await client.config_set("appendfsync", "no")
    try:
        with pytest.raises(ConfigError, match="appendfsync no"):
            await check_durability(client, Durability.FSYNC)
        with pytest.raises(NotConfirmed, match="did not confirm its fsync"):
            await pusher.push(records(5))
    finally:
        await client.config_set("appendfsync", "everysec")
    await pusher.push(records(5))


async def test_start_up_refuses_fsync_with_appendonly_no(without_aof: ValkeyServer) -> None:
    plain = connect_redis(without_aof.url)
    try:
        with pytest.raises(ConfigError, match=r"ANALYTICS_DURABILITY=fsync: Valkey .* appendonly no"):
            await check_durability(plain, Durability.FSYNC)
        assert await check_durability(plain, Durability.ASYNC) is None
    finally:
        await plain.aclose()


async def test_start_up_refuses_fsync_on_a_server_without_waitaof(without_waitaof: ValkeyServer) -> None:
    old = connect_redis(without_waitaof.url)
    try:
        with pytest.raises(
            ConfigError, match=r"refuses WAITAOF \(unknown command .*\); WAITAOF needs Redis 7\.2\+ or Valkey"
        ):
            await check_durability(old, Durability.FSYNC)
    finally:
        await old.aclose()


async def test_replica_mode_without_a_replica_starts_with_a_warning(without_aof: ValkeyServer) -> None:
    alone = connect_redis(without_aof.url)
    try:
        assert await check_durability(alone, Durability.REPLICA) == (
            "no replica is connected to Redis: ingestion answers 503 until one is"
        )
    finally:
        await alone.aclose()


async def test_replica_mode_with_a_replica_starts_quietly(client: aioredis.Redis) -> None:
    assert await check_durability(client, Durability.REPLICA) is None


def test_serve_refuses_to_start_with_a_durability_the_server_cannot_give(without_aof: ValkeyServer) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("ANALYTICS_", "TEST_"))}
    environment |= {
        "REDIS_URL": without_aof.url,
        # Never reached: the check comes before the first PostgreSQL connection.
        "DATABASE_URL": "postgresql://127.0.0.1:9/unused",
        "ANALYTICS_ROLE": "api",
    }
    command = [sys.executable, "-m", "analytics", "--env-file", "/nonexistent/.env", "serve", "--port", "0"]
    finished = subprocess.run(
        [*command, "--no-migrate", "--durability", "fsync"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert finished.returncode == 2, finished.stderr
    assert "analytics: error: ANALYTICS_DURABILITY=fsync: Valkey" in finished.stderr
    assert "appendonly no (set appendonly yes)" in finished.stderr


@pytest.mark.parametrize(("durability", "wait"), [(Durability.REPLICA, "wait"), (Durability.FSYNC, "waitaof")])
async def test_concurrent_pushes_share_one_wait(
    client: aioredis.Redis, keys: QueueKeys, durability: Durability, wait: str
) -> None:
    pusher = Pusher(client, keys, 10**9, durability)
    before = (await calls(client, "rpush"), await calls(client, wait))
    await asyncio.gather(*(pusher.push(records(3)) for _ in range(200)))
    after = (await calls(client, "rpush"), await calls(client, wait))
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1), "one flush, one wait"
    assert await client.llen(keys.queue) == 600


async def test_async_mode_sends_no_wait(client: aioredis.Redis, keys: QueueKeys) -> None:
    pusher = Pusher(client, keys, 10**9)
    before = [await calls(client, command) for command in ("rpush", "wait", "waitaof", "multi")]
    await asyncio.gather(*(pusher.push(records(3)) for _ in range(50)))
    await pusher.push(records(PUSH_CHUNK + 1))
    after = [await calls(client, command) for command in ("rpush", "wait", "waitaof", "multi")]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 0, 0, 1]
