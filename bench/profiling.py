"""py-spy profiles of a running service process, summarised as text for RESULTS.md."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Python frames the event loop sits in while waiting for I/O (with --idle, py-spy still reports such samples).
# uvloop.run() runs the loop through asyncio.Runner; uvloop's own loop is C, so a sample whose innermost Python frame
# is the runner is a sample of the loop waiting (or of C code it runs between Python callbacks).
# With --native, a sample whose innermost frame is epoll's wait is the loop waiting for I/O.
LOOP_FRAMES = (
    "Runner.run ",
    "run (uvloop",
    "run_until_complete (",
    "_run_once",
    "select (selectors",
    "epoll_wait",
    "epoll_pwait",
)


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    samples: int
    idle: int
    self_time: Counter[str]
    inclusive: Counter[str]

    def lines(
        self, top: int = 12, *, idle: str = "waiting in the event loop", busy: str = "in code", inclusive: bool = True
    ) -> list[str]:
        working = self.samples - self.idle
        if not working:
            return [f"{self.samples:,} samples, all {idle}"]
        out = [
            f"{self.samples:,} samples at 100 Hz: {self.idle / self.samples:.0%} {idle}, "
            f"{working / self.samples:.0%} {busy}"
        ]
        out.append(
            "self time, share of those: "
            + "; ".join(f"{name} {count / working:.0%}" for name, count in self.self_time.most_common(top))
        )
        if inclusive:
            out.append(
                "inclusive time of Python functions, share of those: "
                + "; ".join(f"{name} {count / working:.0%}" for name, count in self.inclusive.most_common(top))
            )
        return out


def _short(frame: str) -> str:
    """`merge (analytics/store/events.py:123)` → `merge (events.py)`."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name


def parse_collapsed(text: str) -> Profile:
    samples = idle = 0
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame and not frame.startswith("process ")]
        frames = [frame for frame in frames if not frame.startswith("thread ")]
        samples += count
        if not frames or any(frames[-1].startswith(marker) for marker in LOOP_FRAMES):
            idle += count
            continue
        self_time[_short(frames[-1])] += count
        # Frames down to the loop runner (runpy, main, the CLI's wiring) are in every sample: not informative.
        runner = max((i for i, frame in enumerate(frames) if frame.startswith(LOOP_FRAMES[0])), default=-1)
        for name in {_short(frame) for frame in frames[runner + 1 :]}:
            inclusive[name] += count
    # With --native, inclusive time is reported for Python functions only: the loop's C frames (uv_run, task_step,
    # …) are in nearly every sample and say nothing.
    for name in [name for name in inclusive if not name.endswith(".py)")]:
        del inclusive[name]
    return Profile(samples=samples, idle=idle, self_time=self_time, inclusive=inclusive)


def record(pid: int, seconds: float, *, native: bool = False) -> Profile | str:
    """Sample `pid` for `seconds` (non-blocking, idle samples included). Returns a Profile, or why there is none."""
    executable = py_spy()
    if executable is None:
        return "py-spy is not installed (pip install py-spy)"
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "profile.txt"
        argv = [
            executable,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "100",
            "--format",
            "raw",
            "--idle",
            *([] if native else ["--nonblocking"]),
            "--output",
            str(output),
        ]
        if native:
            argv.append("--native")
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not output.exists():
            return f"py-spy failed: {result.stderr.strip()[-300:]}"
        return parse_collapsed(output.read_text())
