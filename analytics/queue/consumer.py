"""The writer's side of the queue: claim into its own processing list, ack, heartbeat, recover orphans, give back."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import cast

from analytics.queue.client import Redis, translated
from analytics.queue.dead_letters import DeadLetter, encode_dead_letter
from analytics.queue.keys import QueueKeys
from analytics.queue.scripts import CLAIM, GIVE_BACK, RECOVER

logger = logging.getLogger(__name__)


class WriterQueue:
    """One writer lane's queue operations; every Redis error comes out as `QueueUnavailable`."""

    def __init__(self, client: Redis, keys: QueueKeys, writer_id: str, heartbeat_ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self.writer_id = writer_id
        self._heartbeat_ttl_ms = heartbeat_ttl_s * 1000
        self._processing = keys.processing(writer_id)
        self._claim = client.register_script(CLAIM)
        self._recover = client.register_script(RECOVER)
        self._give_back = client.register_script(GIVE_BACK)

    @translated
    async def heartbeat(self) -> None:
        """Prove this writer alive; (re-)register it so recovery knows its processing list."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.heartbeat(self.writer_id), b"1", px=self._heartbeat_ttl_ms)
            pipe.sadd(self._keys.writers, self.writer_id)
            await pipe.execute()

    @translated
    async def retire(self) -> None:
        """On a clean exit: nothing left in processing, so drop the heartbeat and the registration."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.heartbeat(self.writer_id))
            pipe.srem(self._keys.writers, self.writer_id)
            await pipe.execute()

    @translated
    async def claim(self, count: int) -> list[bytes]:
        records: list[bytes] = await self._claim(keys=[self._keys.queue, self._processing], args=[count])
        return records

    @translated
    async def take_first(self, timeout_s: float) -> bytes | None:
        """Block until a record arrives and move it into the processing list, so a crash cannot lose it."""
        # blmove is typed for whole seconds, but Redis >= 6 takes a decimal timeout.
        pending = self._client.blmove(self._keys.queue, self._processing, timeout_s, src="LEFT", dest="RIGHT")  # type: ignore[arg-type]
        return await cast("Awaitable[bytes | None]", pending)

    @translated
    async def held(self) -> list[bytes]:
        """What this writer's processing list holds: records claimed but not yet acked."""
        return await cast("Awaitable[list[bytes]]", self._client.lrange(self._processing, 0, -1))

    @translated
    async def ack(self) -> None:
        """The batch is committed in PostgreSQL: forget it."""
        await self._client.delete(self._processing)

    @translated
    async def give_back(self) -> int:
        """Return this writer's uncommitted batch to the queue (shutdown without a database), in one script.

        Read, re-push and delete in separate commands would lose the batch to an error or a kill between them.
        """
        moved: int = await self._give_back(keys=[self._keys.queue, self._processing])
        return moved

    @translated
    async def recover_orphans(self) -> int:
        """Re-queue the processing lists of writers whose heartbeat expired. Returns the records moved."""
        moved = 0
        writer_ids = await cast("Awaitable[set[bytes]]", self._client.smembers(self._keys.writers))
        for raw_id in writer_ids:
            writer_id = raw_id.decode()
            if writer_id == self.writer_id:
                continue
            keys = [
                self._keys.queue,
                self._keys.processing(writer_id),
                self._keys.heartbeat(writer_id),
                self._keys.writers,
            ]
            count: int = await self._recover(keys=keys, args=[writer_id])
            if count >= 0:
                logger.warning("writer %s stopped beating: re-queued its %s uncommitted events", writer_id, count)
                moved += count
        return moved

    @translated
    async def dead_letter(self, failures: Sequence[tuple[bytes, str]]) -> None:
        now = datetime.now(UTC)
        entries = [encode_dead_letter(DeadLetter(reason=reason, failed_at=now, data=data)) for data, reason in failures]
        await cast("Awaitable[int]", self._client.rpush(self._keys.dead, *entries))
