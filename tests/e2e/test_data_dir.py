"""Embedded servers as real processes see them: one data dir has one owner, and a dead server stops the service.

Every test runs `python -m analytics` with DATABASE_URL / REDIS_URL unset and ANALYTICS_DATA_DIR in a fresh directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest
import redis

from analytics.queue.dead_letters import DeadLetter
from analytics.queue.keys import QueueKeys
from tests.helpers.factories import event
from tests.helpers.ports import free_port
from tests.helpers.processes import ANALYTICS

COMMAND_TIMEOUT_S = 60


def environment(data_dir: Path, **values: str) -> dict[str, str]:
    """The test runner's environment without any URL or analytics setting, plus `values`."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ANALYTICS_", "TEST_")) and key not in ("DATABASE_URL", "REDIS_URL", "HOST", "PORT")
    }
    return {**inherited, "ANALYTICS_DATA_DIR": str(data_dir), "LOG_LEVEL": "info", **values}


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed daemon stays one until init reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def gone(pids: list[int], timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(running(pid) for pid in pids)


def postgres_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def valkey_pid(data_dir: Path) -> int:
    return int((data_dir / "valkey" / "valkey.pid").read_text().strip())


def run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ANALYTICS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    return stderr


class Service:
    """`analytics serve` on a free port, its output in a file."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log_path = cwd / f"serve-{self.port}.log"
        with self._log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*ANALYTICS, "serve", "--port", str(self.port)], cwd=cwd, env=env, stdout=log, stderr=log
            )

    def healthy(self, timeout_s: float = 60) -> Service:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base_url}/api/healthcheck", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"not healthy in {timeout_s} s:\n{self.log()}")

    def exit_code(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout_s} s:\n{self.log()}") from None

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.exit_code(30)

    def ingests(self) -> int:
        return httpx.post(f"{self.base_url}/api/ingestion/event", json=event(), timeout=10).status_code

    def views(self, timeout_s: float = 10) -> int:
        """Page views stored for the default event's site, once there are any (the writer commits within ms)."""
        deadline = time.monotonic() + timeout_s
        while True:
            response = httpx.get(f"{self.base_url}/api/reporting/stats", params={"site_id": "site-abc-123"}, timeout=5)
            if response.status_code == 200 or time.monotonic() >= deadline:
                assert response.status_code == 200, response.text
                views: int = response.json()["data"]["total_views"]
                return views
            time.sleep(0.05)

    def valkey_url(self) -> str:
        found = re.search(r"embedded Valkey ready on (127\.0\.0\.1:\d+)", self.log())
        assert found, self.log()
        return f"redis://{found.group(1)}/0"

    def log(self) -> str:
        return self._log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """The commands' working directory, outside pytest's tmp root: another pytest session resets that root to mode
    0700, which locks embedded PostgreSQL's system user (when run as root) out of its data mid-test."""
    path = Path(tempfile.mkdtemp(prefix="analytics-e2e-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def data_dir(workdir: Path) -> Iterator[Path]:
    """A fresh data dir; whatever embedded server still runs on it afterwards (a failed test's) is killed."""
    path = workdir / "data"
    yield path
    for read, signum in ((postgres_pid, signal.SIGQUIT), (valkey_pid, signal.SIGKILL)):
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(read(path), signum)


@pytest.fixture
def services(data_dir: Path) -> Iterator[list[Service]]:
    """Services a test starts; killed at teardown if the test left them running."""
    started: list[Service] = []
    yield started
    for service in started:
        service.kill()


def start(services: list[Service], cwd: Path, data_dir: Path) -> Service:
    service = Service(cwd, environment(data_dir))
    services.append(service)
    return service.healthy()


def test_dead_letters_while_serving_use_the_services_valkey(
    workdir: Path, data_dir: Path, services: list[Service]
) -> None:
    service = start(services, workdir, data_dir)
    valkey = valkey_pid(data_dir)
    letter = DeadLetter(reason="seeded by the test", failed_at=datetime.now(UTC), data=b"\xc1")
    with redis.Redis.from_url(service.valkey_url()) as client:
        client.rpush(QueueKeys("analytics").dead, msgspec.msgpack.encode(letter))

    listed = run(workdir, environment(data_dir), "dead-letters", "list")

    assert listed.returncode == 0, listed.stderr
    assert [line for line in listed.stdout.splitlines() if "seeded by the test" in line], listed.stdout
    assert running(valkey), f"the service's Valkey was stopped:\n{listed.stderr}"
    assert service.ingests() == 202
    purged = run(workdir, environment(data_dir), "dead-letters", "purge")
    assert (purged.returncode, purged.stdout) == (0, "purged 1 record(s)\n"), purged.stderr
    assert service.stop() == 0


def test_migrate_while_serving_uses_the_services_postgresql(
    workdir: Path, data_dir: Path, services: list[Service]
) -> None:
    service = start(services, workdir, data_dir)
    postgres = postgres_pid(data_dir)

    migrated = run(workdir, environment(data_dir), "migrate")

    assert (migrated.returncode, migrated.stdout) == (0, "database is up to date\n"), migrated.stderr
    assert running(postgres)
    assert postgres_pid(data_dir) == postgres
    assert service.ingests() == 202
    assert service.views() == 1
    assert service.stop() == 0


def test_second_serve_on_a_data_dir_in_use_is_refused(workdir: Path, data_dir: Path, services: list[Service]) -> None:
    first = start(services, workdir, data_dir)
    servers = [postgres_pid(data_dir), valkey_pid(data_dir)]
    second_port = str(free_port())

    try:
        refused = run(workdir, environment(data_dir), "serve", "--port", second_port)
    except subprocess.TimeoutExpired:
        raise AssertionError("a second serve on the same data dir kept running") from None

    assert refused.returncode == 1
    message = one_line(refused.stderr)
    assert str(data_dir) in message
    assert f"pid {first.process.pid}" in message
    assert all(running(pid) for pid in servers)
    assert first.ingests() == 202
    assert first.stop() == 0


def test_dead_letters_where_no_service_ever_ran_say_so(workdir: Path, data_dir: Path) -> None:
    result = run(workdir, environment(data_dir), "dead-letters", "purge")

    assert result.returncode == 1, result.stdout
    message = one_line(result.stderr)
    assert str(data_dir) in message
    assert "ANALYTICS_DATA_DIR" in message
    assert "REDIS_URL" in message
    assert result.stdout == ""
    assert not data_dir.exists(), "it created a data dir"


def test_servers_a_killed_service_left_running_are_stopped_by_the_next_run(
    workdir: Path, data_dir: Path, services: list[Service]
) -> None:
    killed = start(services, workdir, data_dir)
    assert killed.ingests() == 202
    assert killed.views() == 1
    killed.kill()
    orphans = [postgres_pid(data_dir), valkey_pid(data_dir)]
    assert all(running(pid) for pid in orphans)

    listed = run(workdir, environment(data_dir), "dead-letters", "list")
    assert listed.returncode == 0, listed.stderr
    assert not running(orphans[1]), "the orphaned Valkey was not stopped"

    service = start(services, workdir, data_dir)
    replacements = [postgres_pid(data_dir), valkey_pid(data_dir)]
    assert service.views() == 1
    assert service.stop() == 0
    assert gone(orphans + replacements), "embedded servers left running"


@pytest.mark.parametrize(("server", "read_pid"), [("Valkey", valkey_pid), ("PostgreSQL", postgres_pid)])
def test_a_killed_embedded_server_stops_the_service(
    workdir: Path, data_dir: Path, services: list[Service], server: str, read_pid: Callable[[Path], int]
) -> None:
    service = start(services, workdir, data_dir)
    assert service.ingests() == 202
    assert service.views() == 1
    servers = [postgres_pid(data_dir), valkey_pid(data_dir)]
    os.kill(read_pid(data_dir), signal.SIGKILL)
    killed_at = time.monotonic()

    code = service.exit_code(30)

    assert code == 1, service.log()
    assert time.monotonic() - killed_at < 15, "the shutdown took too long"
    lines = [line for line in service.log().splitlines() if f"embedded {server}" in line and "supervisor" in line]
    assert len(lines) == 1, service.log()
    assert "level=error" in lines[0]
    assert "Traceback" not in service.log()
    assert gone(servers), "an embedded server was left running"
    restarted = start(services, workdir, data_dir)  # what the supervisor does next
    assert restarted.views() == 1
    assert restarted.stop() == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "nonexistent.invalid", "192.0.2.1"])
def test_an_address_that_cannot_be_bound_is_one_line_and_exit_code_1(workdir: Path, data_dir: Path, host: str) -> None:
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        result = run(workdir, environment(data_dir, HOST=host), "serve", "--port", str(port))

    assert result.returncode == 1, result.stderr
    message = one_line(result.stderr)
    assert message.startswith(f"analytics: error: cannot listen on {host}:{port}: "), message
    assert "serving" not in result.stdout + result.stderr
    assert not data_dir.exists(), "embedded servers were started for nothing"
