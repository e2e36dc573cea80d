"""Named SQL, read once from the `.sql` files beside this module: `-- name: <name>` starts a query (procrastinate's
convention). No SQL is built at run time, and none from input."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Final

_NAME: Final = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)


def parse(text: str) -> Mapping[str, str]:
    """The queries of one file by name; what comes before the first name (the file's header) is not a query."""
    malformed = [line for line in text.splitlines() if line.startswith("-- name:") and not _NAME.match(line + "\n")]
    if malformed:
        raise ValueError(f"not a query name (-- name: <word>): {malformed[0]!r}")
    parts = _NAME.split(text)
    queries = {name: body.strip() + "\n" for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if len(queries) != len(parts) // 2:
        raise ValueError("a query name is used twice")
    return MappingProxyType(queries)


def fragment(query: str) -> str:
    """A template without its comment lines: it is spliced into a line of another."""
    return "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("--"))


def load(file: str) -> Mapping[str, str]:
    return parse(resources.files("analytics.store").joinpath("sql", file).read_text(encoding="utf-8"))


WRITER: Final = load("writer.sql")
STATS: Final = load("stats.sql")
REPORTS: Final = load("reports.sql")
SITES: Final = load("sites.sql")
SHARES: Final = load("shares.sql")
PARTITIONS: Final = load("partitions.sql")
ERASURE: Final = load("erasure.sql")
KEEPER: Final = load("keeper.sql")
