"""The data dir's lock and record, against another process that owns the dir (no servers are started here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics.dev import embedded
from analytics.dev.embedded import (
    POSTGRESQL,
    SERVERS_FILE,
    VALKEY,
    Access,
    Backend,
    EmbeddedError,
    embedded_server,
    running,
)

VALKEY_URL = "redis://127.0.0.1:6390/0"
# Another process owning a data dir through the module, as `serve` does, with the URLs given as JSON.
OWNER = """
import json, sys, time
from pathlib import Path
from analytics.dev.embedded import POSTGRESQL, VALKEY, _record, _try_claim
claim = _try_claim(Path(sys.argv[1]))
for kind in (POSTGRESQL, VALKEY):
    url = json.loads(sys.argv[2]).get(kind.subdirectory)
    if url:
        _record(claim, kind, url)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return (tmp_path / "data").resolve()


@pytest.fixture
def owner(data_dir: Path, request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    urls: dict[str, str] = getattr(request, "param", {"valkey": VALKEY_URL})
    with subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data_dir), json.dumps(urls)], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        yield process
        process.kill()


def test_exclusive_use_of_a_data_dir_in_use_is_refused_naming_the_owner(
    data_dir: Path, owner: subprocess.Popen[str]
) -> None:
    with pytest.raises(EmbeddedError) as refused, embedded_server(data_dir, VALKEY, Access.EXCLUSIVE):
        pass
    assert str(refused.value).startswith(f"data dir {data_dir} is in use by pid {owner.pid}: ")
    assert "ANALYTICS_DATA_DIR" in str(refused.value)


def test_shared_use_gets_the_owners_server_and_does_not_watch_it(data_dir: Path, owner: subprocess.Popen[str]) -> None:
    for access in (Access.SHARED, Access.SHARED_EXISTING):
        (data_dir / "valkey" / "appendonlydir").mkdir(parents=True, exist_ok=True)
        with embedded_server(data_dir, VALKEY, access) as backend:
            assert backend == Backend(VALKEY, VALKEY_URL, pid=None)
    assert owner.poll() is None
    assert json.loads((data_dir / SERVERS_FILE).read_text())["urls"] == {"valkey": VALKEY_URL}


@pytest.mark.parametrize("owner", [{"postgres": "postgresql://postgres:@/analytics?host=/x"}], indirect=True)
def test_shared_use_of_a_server_the_owner_does_not_run_is_refused_after_a_wait(
    data_dir: Path, owner: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "ATTACH_TIMEOUT_S", 0.3)
    started = time.monotonic()
    with pytest.raises(EmbeddedError) as refused, embedded_server(data_dir, VALKEY, Access.SHARED):
        pass
    assert time.monotonic() - started >= 0.3
    assert f"in use by pid {owner.pid}, which runs no embedded Valkey" in str(refused.value)
    assert "REDIS_URL" in str(refused.value)


def test_shared_existing_use_of_no_data_is_refused_and_creates_nothing(data_dir: Path) -> None:
    with pytest.raises(EmbeddedError) as refused, embedded_server(data_dir, VALKEY, Access.SHARED_EXISTING):
        pass
    assert str(refused.value).startswith(f"no embedded Valkey data in {data_dir}: ")
    assert not data_dir.exists()


def test_a_dead_owners_lock_is_taken_and_its_record_dropped(data_dir: Path, owner: subprocess.Popen[str]) -> None:
    owner.kill()
    owner.wait()
    assert (data_dir / SERVERS_FILE).exists()
    claim = embedded._try_claim(data_dir)
    assert claim is not None
    try:
        assert not (data_dir / SERVERS_FILE).exists()
        assert embedded._try_claim(data_dir) is claim, "a second server of this process shares its claim"
        embedded._release(claim)
        embedded._record(claim, POSTGRESQL, "postgresql://x")
        assert json.loads((data_dir / SERVERS_FILE).read_text())["urls"] == {"postgres": "postgresql://x"}
    finally:
        embedded._release(claim)
    assert not (data_dir / SERVERS_FILE).exists()
    assert data_dir not in embedded._claims


def test_running_is_false_for_a_zombie_and_a_reaped_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while running(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not running(child.pid), "an exited, unreaped child (a zombie) counts as running"
    child.wait()
    assert not running(child.pid)
    assert running(os.getpid())
