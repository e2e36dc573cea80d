"""Redis key names. Every key of one deployment shares the hash tag `{prefix}`, so the multi-key scripts run on Redis
Cluster (one slot for all of them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Every key shares the hash tag `{prefix}` so the multi-key scripts run on Redis Cluster."""

    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"a key prefix is a non-empty hash tag without braces, got {self.prefix!r}")

    @property
    def queue(self) -> str:
        return f"{{{self.prefix}}}:queue"

    @property
    def dead(self) -> str:
        return f"{{{self.prefix}}}:dead"

    @property
    def writers(self) -> str:
        return f"{{{self.prefix}}}:writers"

    def salt(self, day: str) -> str:
        """The cookieless visitor salt of one UTC day (`YYYY-MM-DD`), shared by every api process."""
        return f"{{{self.prefix}}}:salt:{day}"

    def processing(self, writer_id: str) -> str:
        return f"{{{self.prefix}}}:processing:{writer_id}"

    def heartbeat(self, writer_id: str) -> str:
        return f"{{{self.prefix}}}:heartbeat:{writer_id}"
