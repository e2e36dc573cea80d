"""Records the writer could not store, with the reason: kept in `{prefix}:dead` for an operator to read, requeue or
drop."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import cast

import msgspec

from analytics.queue.client import Redis, translated
from analytics.queue.keys import QueueKeys
from analytics.queue.pusher import PUSH_CHUNK


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
    """Operator's view of `{prefix}:dead`: read it, send it back to the queue, or empty it."""

    def __init__(self, client: Redis, keys: QueueKeys) -> None:
        self._client = client
        self._keys = keys

    @translated
    async def read(self, limit: int) -> list[DeadLetter]:
        entries = await cast("Awaitable[list[bytes]]", self._client.lrange(self._keys.dead, 0, limit - 1))
        return [decode_dead_letter(entry) for entry in entries]

    @translated
    async def requeue(self) -> int:
        """Chunk by chunk, each in one transaction; writers only append, so trimming the head is safe."""
        moved = 0
        while True:
            entries = await cast("Awaitable[list[bytes]]", self._client.lrange(self._keys.dead, 0, PUSH_CHUNK - 1))
            if not entries:
                return moved
            records = [decode_dead_letter(entry).data for entry in entries]
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.rpush(self._keys.queue, *records)
                pipe.ltrim(self._keys.dead, len(entries), -1)
                await pipe.execute()
            moved += len(entries)

    @translated
    async def purge(self) -> int:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.llen(self._keys.dead)
            pipe.delete(self._keys.dead)
            length, _ = await pipe.execute()
        return int(length)
