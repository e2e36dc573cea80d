"""Print a benchmark's figures and append them to bench/RESULTS.md with the date, machine and command."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"
PLOTS = BENCH / "plots"
ROOT = BENCH.parent


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def nproc() -> int:
    """What `nproc` prints: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine() -> str:
    return f"{nproc()} cores (nproc), {cpu_model()}, Python {platform.python_version()}"


def source_state() -> str:
    """The commit measured, and whether the code under measurement had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "analytics", "migrations"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    dirty = sorted({line[3:] for line in changed if line.strip()})
    return f"{commit}" + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else "")


def command_line() -> str:
    """The command as typed from the repository root: `.venv/bin/python -m bench.<script> …`."""
    executable = Path(sys.executable)
    try:
        shown = str(executable.relative_to(Path.cwd()))
    except ValueError:
        shown = str(executable)
    return shlex.join([shown, "-m", f"bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]])


def plot_path(name: str) -> Path:
    """Where a plot of this run goes: bench/plots/<name>-<UTC time>.png (earlier runs' plots stay linked)."""
    PLOTS.mkdir(exist_ok=True)
    return PLOTS / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}.png"


def record_result(
    title: str,
    lines: Sequence[str],
    *,
    context: Sequence[str] = (),
    plots: Sequence[Path] = (),
    tables: Sequence[str] = (),
) -> None:
    """Print the figures, then append an entry: title and date, machine, command, context, figures, tables, plots."""
    for line in lines:
        print(line)
    for table in tables:
        print(table)
    entry = [
        f"\n### {title} — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {machine()}",
        f"- command: `{command_line()}`",
        f"- code measured: {source_state()}",
        *[f"- {line}" for line in context],
        *[f"- {line}" for line in lines],
        "",
    ]
    for table in tables:
        entry += [table, ""]
    for plot in plots:
        relative = plot.resolve().relative_to(BENCH)
        entry += [f"![{plot.stem}]({relative.as_posix()})", ""]
    with RESULTS.open("a") as results:
        results.write("\n".join(entry))
    for plot in plots:
        print(f"plot: {plot}")
