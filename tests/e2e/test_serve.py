"""The real `analytics serve` process, spoken to over HTTP, stopped with real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.factories import event
from tests.helpers.processes import ANALYTICS, base_environment, serve, stop, wait_healthy


def stats_within(base_url: str, timeout_s: float, **params: str) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(f"{base_url}/api/reporting/stats", params=params, timeout=5)
        if response.status_code == 200 or time.monotonic() >= deadline:
            return response
        time.sleep(0.02)


def pid_in(path: Path) -> int:
    return int(path.read_text().splitlines()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_with_configured_backends(tmp_path: Path, database_url: str, redis_url: str) -> None:
    environment = base_environment(
        DATABASE_URL=database_url, REDIS_URL=redis_url, ANALYTICS_REDIS_PREFIX=f"e2e-{tmp_path.name}"
    )
    with serve(tmp_path, environment) as (base_url, process):
        wait_healthy(base_url, process, 30)
        accepted = httpx.post(f"{base_url}/api/ingestion/event", json=event(), timeout=5)
        assert (accepted.status_code, accepted.json()) == (202, {"status": "queued"})
        posted_at = time.monotonic()
        response = stats_within(base_url, 1.0, site_id="site-abc-123")
        assert response.status_code == 200, f"not visible {time.monotonic() - posted_at:.2f} s after the 202"
        assert response.json()["data"]["total_views"] == 1
        assert stop(process, signal.SIGTERM) == 0


def test_embedded_run_survives_ctrl_c_and_keeps_its_data(tmp_path: Path) -> None:
    """The README's run command: no URLs, embedded servers; Ctrl-C leaves nothing running; data survives."""
    data_dir = tmp_path / "data"
    environment = base_environment(ANALYTICS_DATA_DIR=str(data_dir))
    with serve(tmp_path, environment) as (base_url, process):
        wait_healthy(base_url, process, 30)
        assert httpx.post(f"{base_url}/api/ingestion/event", json=event(), timeout=5).status_code == 202
        assert stats_within(base_url, 1.0, site_id="site-abc-123").status_code == 200
        servers = [pid_in(data_dir / "postgres" / "postmaster.pid"), pid_in(data_dir / "valkey" / "valkey.pid")]
        assert all(alive(pid) for pid in servers)
        assert stop(process, signal.SIGINT) == 0
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in servers if alive(pid)], "embedded servers left running"

    with serve(tmp_path, environment) as (base_url, process):
        wait_healthy(base_url, process, 30)
        response = httpx.get(f"{base_url}/api/reporting/stats", params={"site_id": "site-abc-123"}, timeout=5)
        assert response.status_code == 200
        assert response.json()["data"]["total_views"] == 1
        assert stop(process, signal.SIGTERM) == 0


@pytest.mark.parametrize(
    ("environment", "args", "message"),
    [
        ({"PORT": "abc"}, [], "analytics: error: PORT: expected a whole number, got 'abc'"),
        ({}, ["--port", "abc"], "analytics: error: PORT: expected a whole number, got 'abc'"),
        ({"DATABASE_URL": "mysql://db/x"}, [], "analytics: error: DATABASE_URL: expected a URL starting with"),
        ({"ANALYTICS_BATCH_SIZE": "-1"}, [], "analytics: error: ANALYTICS_BATCH_SIZE: expected a number from 1"),
        ({}, ["--workers", "2"], "analytics: error: ANALYTICS_WORKERS: 2 workers need ANALYTICS_ROLE=api"),
        ({"ANALYTICS_WORKERS": "3"}, ["--role", "writer"], "analytics: error: ANALYTICS_WORKERS: 3 workers need"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_code_2(
    tmp_path: Path, environment: dict[str, str], args: list[str], message: str
) -> None:
    result = subprocess.run(
        [*ANALYTICS, "serve", *args], cwd=tmp_path, env=base_environment(**environment), capture_output=True, timeout=30
    )
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert stderr.startswith(message)
    assert stderr.count("\n") == 1, stderr


def test_help_shows_defaults_and_environment_twins(tmp_path: Path) -> None:
    result = subprocess.run([*ANALYTICS, "serve", "--help"], cwd=tmp_path, capture_output=True, timeout=30, check=True)
    text = " ".join(result.stdout.decode().split())
    assert "env PORT; default: 3000" in text
    assert "env ANALYTICS_ROLE; default: all" in text
    assert "env HOST; default: 127.0.0.1" in text
    assert "--durability {async,replica,fsync}" in text
    assert "env ANALYTICS_DURABILITY; default: async" in text
    assert "--workers WORKERS" in text
    assert "env ANALYTICS_WORKERS; default: 1" in text


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_unreachable_database_at_migration_is_one_line_and_exit_code_1(tmp_path: Path, command: str) -> None:
    environment = base_environment(
        DATABASE_URL="postgresql://postgres@127.0.0.1:1/none", REDIS_URL="redis://127.0.0.1:1"
    )
    result = subprocess.run([*ANALYTICS, command], cwd=tmp_path, env=environment, capture_output=True, timeout=30)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert stderr.startswith("analytics: error: cannot reach PostgreSQL to migrate: ")
    assert stderr.count("\n") == 1, stderr
