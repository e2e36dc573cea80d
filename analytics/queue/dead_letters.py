"""Records the writer could not store, with the reason: kept in each queue shard's dead list (`{prefix}:dead`,
`{prefix:n}:dead`) for an operator to read, requeue or drop."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import cast

import msgspec

from analytics.queue.client import translated
from analytics.queue.connection import Redis, holder_of
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import PUSH_CHUNK
from analytics.queue.shards import known_shards


class DeadLetter(msgspec.Struct, frozen=True):
    reason: str
    failed_at: datetime
    data: bytes


_encode_dead = msgspec.msgpack.Encoder().encode
_decode_dead = msgspec.msgpack.Decoder(DeadLetter).decode


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return _encode_dead(letter)


def decode_dead_letter(entry: bytes) -> DeadLetter:
    return _decode_dead(entry)


class DeadLetters:
    """Operator's view of the dead lists of every shard that may hold records: read them, send each back to its own
    shard's queue, or empty them. `shards` is this process's setting; the deployment's recorded count may be more."""

    def __init__(self, client: Redis, keys: QueueKeys, shards: int = 1) -> None:
        self._client = client
        self._keys = keys
        self._shards = shards

    async def _shard_keys(self) -> list[QueueKeys]:
        return [
            self._keys.of_shard(shard) for shard in range(await known_shards(self._client, self._keys, self._shards))
        ]

    @translated
    async def read(self, limit: int) -> list[tuple[int, DeadLetter]]:
        """Up to `limit` letters with their shard, shard by shard in order."""
        letters: list[tuple[int, DeadLetter]] = []
        for keys in await self._shard_keys():
            if len(letters) >= limit:
                break
            entries = await cast("Awaitable[list[bytes]]", self._client.lrange(keys.dead, 0, limit - len(letters) - 1))
            letters += [(keys.shard, decode_dead_letter(entry)) for entry in entries]
        return letters

    @translated
    async def requeue(self) -> int:
        """Chunk by chunk, each in one transaction on one shard's keys (one Redis Cluster slot); writers only append,
        so trimming the head is safe."""
        moved = 0
        for keys in await self._shard_keys():
            while True:
                entries = await cast("Awaitable[list[bytes]]", self._client.lrange(keys.dead, 0, PUSH_CHUNK - 1))
                if not entries:
                    break
                records = [decode_dead_letter(entry).data for entry in entries]
                async with holder_of(self._client, keys.queue) as server, server.pipeline(transaction=True) as pipe:
                    pipe.rpush(keys.queue, *records)
                    pipe.ltrim(keys.dead, len(entries), -1)
                    await pipe.execute()
                moved += len(entries)
        return moved

    @translated
    async def purge(self) -> int:
        purged = 0
        for keys in await self._shard_keys():
            async with holder_of(self._client, keys.dead) as server, server.pipeline(transaction=True) as pipe:
                pipe.llen(keys.dead)
                pipe.delete(keys.dead)
                length, _ = await pipe.execute()
            purged += int(length)
        return purged
