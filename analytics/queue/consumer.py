"""The writer's side of the queue: turns on shards under a lease, claim into its own processing list, ack,
heartbeat, recover orphans, give back."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import cast

from analytics.queue.client import translated
from analytics.queue.connection import Redis, holder_of, script
from analytics.queue.dead_letters import DeadLetter, encode_dead_letter
from analytics.queue.keys import QueueKeys
from analytics.queue.scripts import CLAIM, GIVE_BACK, RECOVER, RELEASE, RENEW
from analytics.queue.shards import plan_turn, record_shards

logger = logging.getLogger(__name__)


class WriterQueue:
    """One writer lane's queue operations; every Redis error comes out as `QueueUnavailable`.

    The lane works one shard at a time, a turn: `take_turn` picks the shard (leasing it when it can), the batch
    operations act on that shard's keys, and `end_turn` drops the lease. A turn ends only once the lane's processing
    list in that shard is empty, so a lane holds records in at most one shard. The lane is registered (heartbeat +
    the shard's writers set) in every shard it has worked, and stays so until it retires: recovery in each shard
    knows every lane that may hold a processing list there. Until its first turn, a lane is on shard 0.
    """

    def __init__(self, client: Redis, keys: QueueKeys, writer_id: str, heartbeat_ttl_s: int, shards: int = 1) -> None:
        self._client = client
        self._keys = keys.of_shard(0)
        self.writer_id = writer_id
        self._heartbeat_ttl_ms = heartbeat_ttl_s * 1000
        self._configured_shards = shards
        self.shard_count = shards
        self._shard = self._keys
        self.in_turn = False
        self.leased = False
        self._registered: set[int] = set()
        self._claim = script(client, CLAIM)
        self._recover = script(client, RECOVER)
        self._give_back = script(client, GIVE_BACK)
        self._renew = script(client, RENEW)
        self._release = script(client, RELEASE)

    @property
    def shard(self) -> int:
        return self._shard.shard

    @translated
    async def refresh_shards(self) -> int:
        """Record this lane's shard count and learn the deployment's (a lowered count still drains higher shards)."""
        self.shard_count = await record_shards(self._client, self._keys, self._configured_shards)
        return self.shard_count

    @translated
    async def take_turn(self) -> None:
        """Pick this lane's next shard (`plan_turn`): lease the first free one it can win, else work one unleased;
        register there before any record can move into its processing list."""
        shards = [self._keys.of_shard(shard) for shard in range(self.shard_count)]
        async with self._client.pipeline(transaction=False) as pipe:
            for keys in shards:
                pipe.llen(keys.queue)
                pipe.exists(keys.lease)
            replies = await pipe.execute()
        candidates, chosen = plan_turn(self.shard, replies[0::2], [bool(held) for held in replies[1::2]])
        leased = False
        for shard in candidates:
            if await self._client.set(shards[shard].lease, self.writer_id, nx=True, px=self._heartbeat_ttl_ms):
                chosen, leased = shard, True
                break
        if chosen not in self._registered:
            # Before the turn starts: a record moved into an unregistered processing list could never be recovered.
            await self._register(shards[chosen])
        self._shard, self.leased, self.in_turn = shards[chosen], leased, True

    @translated
    async def end_turn(self) -> None:
        """The processing list is empty (acked or given back): drop the lease so another lane may take the shard."""
        if self.leased:
            await self._release(keys=[self._shard.lease], args=[self.writer_id])
        self.leased = self.in_turn = False

    async def _register(self, keys: QueueKeys) -> None:
        async with holder_of(self._client, keys.writers) as server, server.pipeline(transaction=True) as pipe:
            pipe.set(keys.heartbeat(self.writer_id), b"1", px=self._heartbeat_ttl_ms)
            pipe.sadd(keys.writers, self.writer_id)
            await pipe.execute()
        self._registered.add(keys.shard)

    @translated
    async def heartbeat(self) -> None:
        """Prove this lane alive in every shard it is registered in (registering the current one), so recovery
        leaves its processing lists alone; renew its lease."""
        if self.shard not in self._registered:
            await self._register(self._shard)
        async with self._client.pipeline(transaction=False) as pipe:
            for shard in sorted(self._registered):
                keys = self._keys.of_shard(shard)
                pipe.set(keys.heartbeat(self.writer_id), b"1", px=self._heartbeat_ttl_ms)
                pipe.sadd(keys.writers, self.writer_id)
            await pipe.execute()
        if self.leased:
            lease = self._shard
            renewed = await self._renew(keys=[lease.lease], args=[self.writer_id, self._heartbeat_ttl_ms])
            if not renewed and self._shard == lease:
                self.leased = False  # it expired (a pause past the TTL) and another lane took it: not ours to drop

    @translated
    async def retire(self) -> None:
        """On a clean exit: nothing left in processing, so drop the lease, the heartbeats and the registrations."""
        if self.leased:
            await self._release(keys=[self._shard.lease], args=[self.writer_id])
            self.leased = False
        async with self._client.pipeline(transaction=False) as pipe:
            for shard in sorted(self._registered | {self.shard}):
                keys = self._keys.of_shard(shard)
                pipe.delete(keys.heartbeat(self.writer_id))
                pipe.srem(keys.writers, self.writer_id)
            await pipe.execute()
        self._registered.clear()

    @translated
    async def claim(self, count: int) -> list[bytes]:
        """Move up to `count` records into the processing list. Sent as it is once (`holder_of`), never retried: a
        claim that ran but whose answer was lost, run again, would hand over other records, and the ack would delete
        the first ones unwritten. redis-py's cluster client retries a command whose connection failed, which lost
        events in a failover test; the next batch starts from the processing list instead (`held`)."""
        keys = [self._shard.queue, self._shard.processing(self.writer_id)]
        async with holder_of(self._client, self._shard.queue) as server:
            records: list[bytes] = await self._claim(keys=keys, args=[count], client=server)
        return records

    @translated
    async def take_first(self, timeout_s: float) -> bytes | None:
        """Block until a record arrives and move it into the processing list, so a crash cannot lose it. Never
        retried, as `claim`."""
        processing = self._shard.processing(self.writer_id)
        async with holder_of(self._client, self._shard.queue) as server:
            # blmove is typed for whole seconds, but Redis >= 6 takes a decimal timeout.
            pending = server.blmove(self._shard.queue, processing, timeout_s, src="LEFT", dest="RIGHT")  # type: ignore[arg-type]
            return await cast("Awaitable[bytes | None]", pending)

    @translated
    async def held(self) -> list[bytes]:
        """What this lane's processing list in the current shard holds: records claimed but not yet acked."""
        return await cast("Awaitable[list[bytes]]", self._client.lrange(self._shard.processing(self.writer_id), 0, -1))

    @translated
    async def ack(self) -> None:
        """The batch is committed in PostgreSQL: forget it."""
        await self._client.delete(self._shard.processing(self.writer_id))

    @translated
    async def give_back(self) -> int:
        """Return this lane's uncommitted batch to its shard's queue (shutdown without a database), in one script.

        Read, re-push and delete in separate commands would lose the batch to an error or a kill between them.
        """
        moved: int = await self._give_back(keys=[self._shard.queue, self._shard.processing(self.writer_id)])
        return moved

    @translated
    async def recover_orphans(self) -> int:
        """Re-queue, shard by shard, the processing lists of lanes whose heartbeat there expired. Returns the records
        moved. Each script touches one shard's keys only (one Redis Cluster slot)."""
        moved = 0
        for shard in range(self.shard_count):
            keys = self._keys.of_shard(shard)
            writer_ids = await cast("Awaitable[set[bytes]]", self._client.smembers(keys.writers))
            for raw_id in writer_ids:
                writer_id = raw_id.decode()
                if writer_id == self.writer_id:
                    continue
                script_keys = [keys.queue, keys.processing(writer_id), keys.heartbeat(writer_id), keys.writers]
                count: int = await self._recover(keys=script_keys, args=[writer_id])
                if count >= 0:
                    logger.warning(
                        "writer %s stopped beating: re-queued its %s uncommitted events in shard %s",
                        writer_id,
                        count,
                        shard,
                    )
                    moved += count
        return moved

    @translated
    async def dead_letter(self, failures: Sequence[tuple[bytes, str]]) -> None:
        """Into the dead list of the shard the records came from."""
        now = datetime.now(UTC)
        entries = [encode_dead_letter(DeadLetter(reason=reason, failed_at=now, data=data)) for data, reason in failures]
        await cast("Awaitable[int]", self._client.rpush(self._shard.dead, *entries))
