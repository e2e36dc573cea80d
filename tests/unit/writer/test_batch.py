"""A claimed batch without I/O: the queued bytes decoded (old formats too), and a refused batch bisected down to the
records at fault with few store calls, every other record written exactly once."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

import msgspec
import pytest

from analytics.errors import DatabaseNeedsOperator, DatabaseUnavailable, UnwritableRecords
from analytics.events.record import Event, encode_event
from analytics.writer.batch import decode_batch, write_bisecting


def numbered(count: int) -> list[Event]:
    return [
        Event("site", "page_view", f"/{number % 7}", f"u{number}", 1_762_975_801_000_000 + number, 5)
        for number in range(count)
    ]


# decode_batch


def test_good_records_decode_side_by_side_with_their_bytes() -> None:
    events = numbered(3)
    raw = [encode_event(event) for event in events]
    decoded = decode_batch(raw)
    assert decoded.raw == raw
    assert decoded.events == events
    assert decoded.undecodable == []


def test_undecodable_records_are_set_aside_with_the_reason_and_the_rest_kept_in_order() -> None:
    events = numbered(3)
    garbage = [b"\x93\x01\x02", b"not msgpack at all", msgspec.msgpack.encode(["site", 7, None, None, 1, 2])]
    batch = [
        garbage[0],
        encode_event(events[0]),
        garbage[1],
        encode_event(events[1]),
        garbage[2],
        encode_event(events[2]),
    ]
    decoded = decode_batch(batch)
    assert decoded.events == events
    assert decoded.raw == [encode_event(event) for event in events]
    assert [data for data, _ in decoded.undecodable] == garbage
    assert all(reason.startswith("undecodable record: ") for _, reason in decoded.undecodable)
    assert len({reason for _, reason in decoded.undecodable}) == 3, "each reason says what was wrong with its record"


def test_old_format_arrays_decode_with_empty_strings_as_null() -> None:
    """Records queued by earlier versions: plain 6-element arrays, `""` where null is meant now."""
    old = [
        msgspec.msgpack.encode(("s", "page_view", "", "", 1, 2)),
        msgspec.msgpack.encode(("s", "click", "/a", "", 3, 4)),
        msgspec.msgpack.encode(("s", "click", None, "u", 5, 6)),
    ]
    decoded = decode_batch(old)
    assert decoded.undecodable == []
    assert decoded.raw == old, "the bytes are kept as queued, so a dead letter holds what was queued"
    assert decoded.events == [
        Event("s", "page_view", None, None, 1, 2),
        Event("s", "click", "/a", None, 3, 4),
        Event("s", "click", None, "u", 5, 6),
    ]


def test_an_empty_batch_decodes_to_nothing() -> None:
    decoded = decode_batch([])
    assert (decoded.raw, decoded.events, decoded.undecodable) == ([], [], [])


# write_bisecting


class PoisonRefusingStore:
    """Refuses, as PostgreSQL refuses a bad row, every batch holding a poisoned event; stores the others."""

    def __init__(self, poisoned: set[str]) -> None:
        self.poisoned = poisoned
        self.calls = 0
        self.written: list[Event] = []
        self._seen: set[str | None] = set()

    async def write(self, events: Sequence[Event]) -> int:
        self.calls += 1
        refused = [event.user_id for event in events if event.user_id in self.poisoned]
        if refused:
            raise UnwritableRecords(f"CharacterNotInRepertoireError near {refused[0]}")
        new = {event.user_id for event in events} - self._seen
        self._seen |= new
        self.written.extend(events)
        return len(new)


async def bisect(events: list[Event], store: PoisonRefusingStore) -> tuple[int, list[tuple[bytes, str]]]:
    return await write_bisecting(store, [encode_event(event) for event in events], events)


async def test_a_clean_batch_is_one_store_call() -> None:
    events = numbered(100)
    store = PoisonRefusingStore(set())
    assert await bisect(events, store) == (100, [])
    assert store.calls == 1
    assert store.written == events


async def test_an_empty_batch_calls_nothing() -> None:
    store = PoisonRefusingStore(set())
    assert await bisect([], store) == (0, [])
    assert store.calls == 0


@pytest.mark.parametrize(
    ("size", "poisoned_at"),
    [
        (1, [0]),
        (2, [1]),
        (1000, [0]),
        (1000, [999]),
        (1000, [499, 500]),
        (1000, [3, 400, 401, 998]),
        (1000, sorted(random.Random(1).sample(range(1000), 10))),
        (5000, sorted(random.Random(2).sample(range(5000), 25))),
        (8, list(range(8))),
    ],
    ids=["alone", "last-of-two", "first", "last", "both-sides-of-the-middle", "scattered", "ten", "twenty-five", "all"],
)
async def test_exactly_the_poisoned_records_come_back_and_the_rest_is_written_once(
    size: int, poisoned_at: list[int]
) -> None:
    events = numbered(size)
    raw = [encode_event(event) for event in events]
    poisoned = {f"u{index}" for index in poisoned_at}
    store = PoisonRefusingStore(poisoned)

    inserted, refused = await write_bisecting(store, raw, events)

    assert [data for data, _ in refused] == [raw[index] for index in poisoned_at]
    assert [reason for _, reason in refused] == [
        f"rejected by PostgreSQL: CharacterNotInRepertoireError near u{index}" for index in poisoned_at
    ]
    good = [event for event in events if event.user_id not in poisoned]
    assert inserted == len(good)
    assert Counter(event.user_id for event in store.written) == Counter(event.user_id for event in good)
    assert store.written == good, "written in the batch's order"


@pytest.mark.parametrize(("size", "poisoned"), [(1000, 1), (1000, 10), (4096, 3), (10_000, 50)])
async def test_store_calls_grow_as_k_log_n_not_n(size: int, poisoned: int) -> None:
    """Each level of the halving holds at most k refused halves, and each splits in two: at most 1 + 2 k log2 n."""
    events = numbered(size)
    store = PoisonRefusingStore({f"u{index}" for index in random.Random(size + poisoned).sample(range(size), poisoned)})
    _, refused = await bisect(events, store)
    assert len(refused) == poisoned
    assert store.calls <= 1 + 2 * poisoned * math.ceil(math.log2(size))


async def test_the_count_is_what_the_store_calls_new() -> None:
    """Duplicates (a re-delivery) are written but not new: the halves' counts are summed as the store gave them."""
    events = numbered(10)
    events = [*events, events[2], events[3]]
    store = PoisonRefusingStore({"u7"})
    inserted, refused = await bisect(events, store)
    assert len(refused) == 1
    assert inserted == 9


class FailingStore:
    """Refuses the first batch over a poisoned record, then fails in another way on call `fail_on`."""

    def __init__(self, error: Exception, fail_on: int) -> None:
        self.error = error
        self.fail_on = fail_on
        self.calls = 0

    async def write(self, events: Sequence[Event]) -> int:
        self.calls += 1
        if self.calls == self.fail_on:
            raise self.error
        if any(event.user_id == "u0" for event in events):
            raise UnwritableRecords("bad row")
        return len(events)


@pytest.mark.parametrize("fail_on", [1, 2, 3], ids=["first-call", "first-half", "second-half"])
@pytest.mark.parametrize(
    "error", [DatabaseUnavailable("connection lost"), DatabaseNeedsOperator("permission denied"), RuntimeError("bug")]
)
async def test_other_errors_propagate_unchanged(error: Exception, fail_on: int) -> None:
    """No partial count or failure list: the caller keeps the whole batch and retries it."""
    events = numbered(16)
    store = FailingStore(error, fail_on)
    with pytest.raises(type(error)) as raised:
        await write_bisecting(store, [encode_event(event) for event in events], events)
    assert raised.value is error
    assert store.calls == fail_on
