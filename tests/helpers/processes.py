"""`python -m analytics serve` as a child process: started on a free port, waited for, signalled, its log read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers.ports import free_port

ANALYTICS = [sys.executable, "-m", "analytics"]


def base_environment(**values: str) -> dict[str, str]:
    """The runner's environment without analytics or test settings, no URLs (embedded servers), plus `values`."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("ANALYTICS_", "TEST_"))}
    environment.update({"DATABASE_URL": "", "REDIS_URL": "", "LOG_LEVEL": "info"})
    environment.update(values)
    return environment


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout_s: float) -> float:
    """Seconds until /api/healthcheck answered 200; fails if the process exits or `timeout_s` passes first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise AssertionError(f"analytics serve exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/api/healthcheck", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not healthy within {timeout_s} s")


@contextmanager
def serve(cwd: Path, environment: dict[str, str], *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`analytics serve` on a free port, logging to `cwd`/serve.log; killed on exit if still running."""
    port = free_port()
    log = (cwd / "serve.log").open("ab")
    process = subprocess.Popen(
        [*ANALYTICS, "serve", "--port", str(port), *args], cwd=cwd, env=environment, stdout=log, stderr=log
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def stop(process: subprocess.Popen[bytes], signum: signal.Signals) -> int:
    process.send_signal(signum)
    return process.wait(timeout=30)


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

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

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


async def log_settled(process: RoleProcess, down: str, up: str, timeout_s: float = 15) -> str:
    """Each writer of the process logged `down` once and, once its backoff let it retry, `up` once."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = process.log()
        writers = log.count(" started")
        counts = (log.count(down), log.count(up))
        if counts == (writers, writers) or time.monotonic() > deadline:
            assert counts == (writers, writers), log
            return log
        await asyncio.sleep(0.2)
