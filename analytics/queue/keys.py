"""Redis key names. The queue is split into shards; every key of one shard shares that shard's hash tag, so each
multi-key script and transaction touches one Redis Cluster slot. Shard 0's tag is `{prefix}`, the tag every key had
before the queue was sharded, so a deployment of one shard keeps its key names and an upgrade finds its records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# A prefix ending in `:<number>` would name another prefix's shard (`{a:1}` is shard 1 of `a`).
_SHARD_SUFFIX: Final = re.compile(r":[0-9]+\Z")


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue shard, all under its hash tag: `{prefix}` for shard 0, `{prefix:n}` for shard n."""

    prefix: str
    shard: int = 0

    def __post_init__(self) -> None:
        if not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"a key prefix is a non-empty hash tag without braces, got {self.prefix!r}")
        if _SHARD_SUFFIX.search(self.prefix):
            raise ValueError(f"a key prefix may not end in :<number> (a shard's hash tag), got {self.prefix!r}")
        if self.shard < 0:
            raise ValueError(f"a shard is numbered from 0, got {self.shard}")

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}}}" if self.shard == 0 else f"{{{self.prefix}:{self.shard}}}"

    def of_shard(self, shard: int) -> QueueKeys:
        return QueueKeys(self.prefix, shard)

    @property
    def queue(self) -> str:
        return f"{self.tag}:queue"

    @property
    def dead(self) -> str:
        return f"{self.tag}:dead"

    @property
    def writers(self) -> str:
        """The writer lanes that may hold a processing list in this shard."""
        return f"{self.tag}:writers"

    @property
    def lease(self) -> str:
        """The writer lane whose turn it is on this shard (a string with a TTL)."""
        return f"{self.tag}:lease"

    @property
    def shard_count(self) -> str:
        """The most shards any process of the deployment was started with: the shards that may hold records."""
        return f"{{{self.prefix}}}:shards"

    def salt(self, day: str) -> str:
        """The cookieless visitor salt of one UTC day (`YYYY-MM-DD`), shared by every api process."""
        return f"{{{self.prefix}}}:salt:{day}"

    def processing(self, writer_id: str) -> str:
        return f"{self.tag}:processing:{writer_id}"

    def heartbeat(self, writer_id: str) -> str:
        return f"{self.tag}:heartbeat:{writer_id}"
