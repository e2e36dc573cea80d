"""`analytics serve --role api --workers 2`: real processes sharing one port, one /metrics, stopped together."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from analytics.events.record import decode_queued
from analytics.queue.keys import QueueKeys
from tests.helpers.factories import event_for
from tests.helpers.load import Load, accepted_at_least, load_while
from tests.helpers.processes import base_environment, serve, wait_healthy

WORKERS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")


@contextmanager
def api_workers(
    tmp_path: Path, database_url: str, redis_url: str, keys: QueueKeys
) -> Iterator[tuple[str, subprocess.Popen[bytes], list[int]]]:
    """The parent, its base URL and its workers' pids, once every worker serves (each logged uvicorn's start)."""
    environment = base_environment(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ANALYTICS_REDIS_PREFIX=keys.prefix,
        TMPDIR=str(tmp_path),  # the metrics directory: what a killed parent leaves behind stays in the test's tree
    )
    with serve(tmp_path, environment, "--role", "api", "--workers", str(WORKERS)) as (base_url, process):
        wait_healthy(base_url, process, 30)
        deadline = time.monotonic() + 30
        while True:
            log = (tmp_path / "serve.log").read_text()
            pids = [int(pid) for pid in re.findall(r"worker \d+ started \(pid (\d+)\)", log)]
            serving = {int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", log)}
            if len(pids) == WORKERS and serving == set(pids):
                break
            assert process.poll() is None, log
            assert time.monotonic() < deadline, log
            time.sleep(0.05)
        yield base_url, process, pids


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def alive(pid: int) -> bool:
    """Running, and not a zombie left for its parent to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def metrics_directories(tmp_path: Path) -> list[Path]:
    return list(tmp_path.glob("analytics-metrics-*"))


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape on a connection of its own: the kernel gives it to either worker."""
    text = httpx.get(f"{base_url}/metrics", timeout=5, headers={"connection": "close"}).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def queued_numbers(redis: aioredis.Redis, keys: QueueKeys) -> collections.Counter[int]:
    """How many times each numbered event is in the queue."""
    records: list[bytes] = await redis.lrange(keys.queue, 0, -1)  # type: ignore[misc]
    return collections.Counter(int(str(decode_queued(record).user_id).removeprefix("u")) for record in records)


async def exit_code(process: subprocess.Popen[bytes], timeout_s: float = 40) -> int:
    deadline = time.monotonic() + timeout_s
    while process.poll() is None:
        assert time.monotonic() < deadline, f"still running {timeout_s} s later"
        await asyncio.sleep(0.05)
    return process.returncode


async def post_each_on_its_own_connection(base_url: str, numbers: range, invalid: int) -> set[int]:
    """The numbered events, 8 at a time, each request on a new connection (so each is accepted by either worker),
    and `invalid` bodies refused with 400; the numbers answered 202."""
    accepted: set[int] = set()
    pending = iter(numbers)
    limits = httpx.Limits(max_keepalive_connections=0)

    async def sender() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:
            for number in pending:
                response = await client.post("/api/ingestion/event", json=event_for(number))
                if response.status_code == 202:
                    accepted.add(number)
            for _ in range(invalid // 8):
                assert (await client.post("/api/ingestion/event", json={"site_id": ""})).status_code == 400

    await asyncio.gather(*[sender() for _ in range(8)])
    return accepted


async def test_workers_share_the_port_and_one_metrics_view(
    tmp_path: Path, database_url: str, redis_url: str, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    with api_workers(tmp_path, database_url, redis_url, keys) as (base_url, process, pids):
        before = {pid: cpu_seconds(pid) for pid in pids}
        accepted = await post_each_on_its_own_connection(base_url, range(1200), invalid=40)
        used = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
        assert accepted == set(range(1200))
        # An idle worker uses well under 0.01 s of CPU over the few seconds this takes; one serving requests, more.
        assert all(seconds >= 0.05 for seconds in used.values()), f"CPU seconds by worker pid: {used}"

        for _ in range(6):  # whichever worker answers, it answers for both
            metrics = scrape(base_url)
            assert metrics[("analytics_events_accepted_total", ())] == 1200
            assert metrics[("analytics_requests_rejected_total", (("reason", "invalid"),))] == 40
            assert metrics[("analytics_queue_depth", ())] == 1200
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"{base_url}/api/ready", timeout=5)
        assert (ready.status_code, ready.json()["status"]) == (200, "ready")

        queued = await queued_numbers(redis, keys)
        assert set(queued) == accepted
        assert set(queued.values()) == {1}, "an event queued more than once"

        process.send_signal(signal.SIGTERM)
        assert await exit_code(process) == 0
        assert not [pid for pid in pids if alive(pid)]


async def test_sigterm_under_load_stops_every_worker_and_loses_nothing(
    tmp_path: Path, database_url: str, redis_url: str, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    with api_workers(tmp_path, database_url, redis_url, keys) as (base_url, process, pids):
        load = Load(base_url, concurrency=16)
        stop_load = asyncio.Event()
        running = await load_while(load, stop_load)
        await accepted_at_least(load, 500)
        process.send_signal(signal.SIGTERM)
        code = await exit_code(process)
        stop_load.set()
        await running
    log = (tmp_path / "serve.log").read_text()
    assert code == 0, log
    assert not [pid for pid in pids if alive(pid)]
    assert log.count(") stopped") == WORKERS, log
    assert not metrics_directories(tmp_path), "the metrics directory was left behind"

    queued = await queued_numbers(redis, keys)
    lost = load.accepted - set(queued)
    assert not lost, f"{len(lost)} events answered 202 are not in Redis, e.g. {sorted(lost)[:5]}"
    assert set(queued) <= load.sent
    assert set(queued.values()) == {1}, "an event queued more than once"


async def test_a_killed_worker_stops_the_others_gracefully_and_the_exit_code_says_so(
    tmp_path: Path, database_url: str, redis_url: str, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    with api_workers(tmp_path, database_url, redis_url, keys) as (base_url, process, pids):
        load = Load(base_url, concurrency=16)
        stop_load = asyncio.Event()
        running = await load_while(load, stop_load)
        await accepted_at_least(load, 500)
        os.kill(pids[0], signal.SIGKILL)
        code = await exit_code(process)
        stop_load.set()
        await running
    log = (tmp_path / "serve.log").read_text()
    assert code == 1, log
    assert f"worker 1 (pid {pids[0]}) was killed by SIGKILL: stopping the others" in log
    assert f"worker 2 (pid {pids[1]}) stopped" in log, "the survivor was not stopped gracefully"
    assert not [pid for pid in pids if alive(pid)]

    queued = await queued_numbers(redis, keys)
    lost = load.accepted - set(queued)
    assert not lost, f"{len(lost)} events answered 202 are not in Redis, e.g. {sorted(lost)[:5]}"
    assert set(queued.values()) == {1}, "an event queued more than once"


def test_workers_do_not_outlive_a_killed_parent(
    tmp_path: Path, database_url: str, redis_url: str, keys: QueueKeys
) -> None:
    with api_workers(tmp_path, database_url, redis_url, keys) as (_, process, pids):
        process.kill()
        process.wait()
        deadline = time.monotonic() + 20
        while [pid for pid in pids if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if alive(pid)], "workers still serving after their parent was killed"
        assert "stopping" in (tmp_path / "serve.log").read_text(), "the workers did not stop gracefully"
