"""A claimed batch as the writer handles it, without I/O of its own: decode the queued bytes, and write through a
store, bisecting a batch the store refuses down to the records at fault."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from analytics.errors import UnwritableRecords
from analytics.events.record import Event, decode_queued

# A record the writer gives up on, and why: the bytes as queued, so an operator can requeue them unchanged.
Failure = tuple[bytes, str]


class BatchStore(Protocol):
    async def write(self, events: Sequence[Event]) -> int:
        """Store `events` in one transaction; return how many were new. Raise `UnwritableRecords` if any is refused."""
        ...


@dataclass
class Decoded:
    """A batch's records that decoded, side by side with their bytes, and the ones that did not."""

    raw: list[bytes] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    undecodable: list[Failure] = field(default_factory=list)


def decode_batch(batch: Sequence[bytes]) -> Decoded:
    decoded = Decoded()
    for data in batch:
        try:
            event = decode_queued(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            decoded.undecodable.append((data, f"undecodable record: {error}"))
        else:
            decoded.raw.append(data)
            decoded.events.append(event)
    return decoded


async def write_bisecting(
    store: BatchStore, raw: Sequence[bytes], events: Sequence[Event]
) -> tuple[int, list[Failure]]:
    """Write every event the store accepts; a refused batch is halved until the refused records stand alone.

    Returns how many were new, and the refused records with the reason. Any other error propagates: the caller keeps
    the whole batch and retries it.
    """
    if not events:
        return 0, []
    try:
        return await store.write(events), []
    except UnwritableRecords as error:
        if len(events) == 1:
            return 0, [(raw[0], f"rejected by PostgreSQL: {error}")]
    middle = len(events) // 2
    first_inserted, first_refused = await write_bisecting(store, raw[:middle], events[:middle])
    second_inserted, second_refused = await write_bisecting(store, raw[middle:], events[middle:])
    return first_inserted + second_inserted, first_refused + second_refused
