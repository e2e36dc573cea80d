"""The worker processes of `serve --workers N`: started by one parent, watched by it, and stopped together.

Workers are fresh interpreters (multiprocessing's spawn), not forks of the parent: each builds its event loop, Redis
client, pusher and PostgreSQL pool exactly as a single `serve` does, and inherits only what it is handed (the sockets
the parent bound, its settings, the environment). The parent binds the port once, so a port in use is one error, not
N, and every worker accepts on that one socket: the kernel hands each connection to one of them.

A worker that ends when it was not asked to stops them all: the others finish their in-flight requests and drain
their pushes, and the parent exits non-zero. Restarting is left to what runs the parent (compose's
`restart: unless-stopped`, systemd's `Restart=`), as for a `serve` whose embedded server dies: one restart policy, in
one place, and a crash is never hidden behind a worker quietly replaced.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Final

logger = logging.getLogger("analytics")

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
# How often the parent asks `failure` whether to stop, besides waking for every signal and every worker's exit.
WATCH_INTERVAL_S: Final = 0.5
# A worker still running this long after SIGTERM is killed: within compose's 30 s stop_grace_period, so the parent
# reports it rather than being killed itself. A worker's own shutdown takes at most about 16 s (10 for in-flight
# requests, 1 for the last push, 5 for the PostgreSQL pool).
STOP_TIMEOUT_S: Final = 25.0
PR_SET_PDEATHSIG: Final = 1


def supervise(
    count: int,
    target: Callable[[int], int],
    inherited: Sequence[socket.socket],
    failure: Callable[[], str | None],
) -> int:
    """Run `target(index)` (it returns the exit code) in `count` processes until a stop signal, a worker that ends,
    or `failure()` saying why to stop; stop them all; the exit code.

    0: stopped by SIGTERM or SIGINT, and every worker stopped cleanly. Otherwise the exit code of the first worker to
    end unasked (2 for a setting it refused), or 1: a worker killed by a signal or not stopped in time, or a failure.
    The parent's copies of `inherited` (the sockets `target` carries) are closed once every worker has its own, so
    the port stops listening when the last worker stops.
    """
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(target, index, os.getpid()), name=f"worker {index}", daemon=True)
        for index in range(1, count + 1)
    ]
    with _stop_signals() as signals:
        for worker in workers:
            worker.start()
            logger.info("%s started (pid %s)", worker.name, worker.pid)
        for sock in inherited:
            sock.close()
        return _Supervision(workers, signals, failure).run()


class _Signals:
    """SIGINT and SIGTERM, noted by the handler and acted on by the supervision loop, which they wake at once."""

    def __init__(self, wakeup: socket.socket) -> None:
        self.wakeup = wakeup
        self.received: signal.Signals | None = None

    def note(self, signum: int, frame: object) -> None:
        self.received = signal.Signals(signum)

    def clear_wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self.wakeup.recv(64):
                pass


@contextlib.contextmanager
def _stop_signals() -> Iterator[_Signals]:
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signals = _Signals(reader)
    previous_wakeup = signal.set_wakeup_fd(writer.fileno())
    previous = {signum: signal.signal(signum, signals.note) for signum in STOP_SIGNALS}
    try:
        yield signals
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_wakeup)
        reader.close()
        writer.close()


class _Supervision:
    def __init__(self, workers: Sequence[BaseProcess], signals: _Signals, failure: Callable[[], str | None]) -> None:
        self._running = {worker.sentinel: worker for worker in workers}
        self._signals = signals
        self._failure = failure
        self._stop_deadline: float | None = None
        self.code = 0

    def run(self) -> int:
        while self._running:
            ready = wait([*self._running, self._signals.wakeup], self._timeout())
            self._signals.clear_wakeup()
            for sentinel in ready:
                if isinstance(sentinel, int) and sentinel in self._running:
                    self._ended(self._running.pop(sentinel))
            if self._stop_deadline is None:
                self._watch()
            elif time.monotonic() >= self._stop_deadline:
                self._kill_the_rest()
        return self.code

    def _timeout(self) -> float:
        if self._stop_deadline is None:
            return WATCH_INTERVAL_S
        return max(0.0, self._stop_deadline - time.monotonic())

    def _watch(self) -> None:
        if self._signals.received is not None:
            logger.info("%s: stopping %d worker(s)", self._signals.received.name, len(self._running))
            self._stop()
            return
        reason = self._failure()
        if reason is not None:
            logger.error("%s: stopping the workers; a supervisor should restart the service", reason)
            self._fail(1)

    def _ended(self, worker: BaseProcess) -> None:
        worker.join()
        code = worker.exitcode
        stopping = self._stop_deadline is not None
        if stopping and code in (0, -signal.SIGTERM):  # -SIGTERM: ended before it could serve, nothing was in flight
            logger.info("%s (pid %s) stopped", worker.name, worker.pid)
            return
        if stopping:
            logger.error("%s (pid %s) %s while stopping", worker.name, worker.pid, _outcome(code))
            self.code = self.code or 1
        else:
            logger.error(
                "%s (pid %s) %s: stopping the others; a supervisor should restart the service",
                worker.name,
                worker.pid,
                _outcome(code),
            )
            self._fail(code if code is not None and code > 0 else 1)

    def _fail(self, code: int) -> None:
        self.code = self.code or code
        self._stop()

    def _stop(self) -> None:
        self._stop_deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self._running.values():
            with contextlib.suppress(ProcessLookupError):
                worker.terminate()

    def _kill_the_rest(self) -> None:
        for worker in self._running.values():
            logger.error("%s (pid %s) did not stop within %g s: killed", worker.name, worker.pid, STOP_TIMEOUT_S)
            worker.kill()
            worker.join()
        self._running.clear()
        self.code = self.code or 1


def _outcome(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _worker(target: Callable[[int], int], index: int, parent: int) -> None:
    """A worker's first step: it is sent SIGTERM when the parent dies, however it dies (SIGKILL included), rather
    than serve on alone holding the port."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        raise SystemExit(1)
    raise SystemExit(target(index))
