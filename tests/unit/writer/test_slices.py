"""Slicing a batch by site (writer/slices.py), with fake stores: each site's records go to one slice in the batch's
order, every slice is written before an error comes out, and the stores close when the last lane lets go."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from analytics.errors import DatabaseUnavailable, UnwritableRecords
from analytics.events.record import Event
from analytics.writer.slices import LOCK_BUCKETS, Slices, site_bucket, split


def event(site: str, number: int) -> Event:
    return Event(site, "page_view", f"/{number}", None, 1_762_975_801_000_000 + number, 0)


class FakeStore:
    """Stores what it is given after a pause; refuses the events of `refused_site`; fails if `fails`."""

    def __init__(self, *, fails: bool = False, refused_site: str | None = None) -> None:
        self.fails = fails
        self.refused_site = refused_site
        self.written: list[Event] = []
        self.closed = False

    async def write(self, events: Sequence[Event]) -> int:
        await asyncio.sleep(0.01)
        if self.fails:
            raise DatabaseUnavailable("connection refused")
        if any(each.site_id == self.refused_site for each in events):
            raise UnwritableRecords("value too long")
        self.written += events
        return len(events)

    async def close(self) -> None:
        self.closed = True


def slices_of(*stores: FakeStore) -> Slices:
    return Slices(stores)  # type: ignore[arg-type]


def test_a_site_bucket_is_stable_and_in_range() -> None:
    buckets = {site_bucket(f"site-{number}") for number in range(5_000)}
    assert buckets <= set(range(LOCK_BUCKETS))
    assert len(buckets) > LOCK_BUCKETS * 0.9  # spread over the buckets, not a constant
    assert site_bucket("example.com") == int("5ababd60", 16) % LOCK_BUCKETS  # md5("example.com") starts 5ababd60


def test_split_sends_each_site_to_its_slice_in_batch_order() -> None:
    events = [event(f"site-{number % 13}", number) for number in range(200)]
    raw = [f"{number}".encode() for number in range(200)]
    parts = split(raw, events, 3)
    assert sorted(data for part in parts for data in part[0]) == sorted(raw)
    for index, (part_raw, part_events) in enumerate(parts):
        assert all(site_bucket(each.site_id) % 3 == index for each in part_events)
        numbers = [int(data) for data in part_raw]
        assert numbers == sorted(numbers)
        assert [each.path for each in part_events] == [f"/{number}" for number in numbers]


async def test_every_slice_is_written_and_counted() -> None:
    first, second = FakeStore(), FakeStore()
    events = [event(f"site-{number % 11}", number) for number in range(100)]
    inserted, refused = await slices_of(first, second).write([b"r"] * len(events), events)
    assert (inserted, refused) == (100, [])
    assert sorted(first.written + second.written, key=lambda each: each.ts_us) == events
    assert first.written
    assert second.written


async def test_a_failing_slice_raises_after_the_others_are_written() -> None:
    sites = ["site-0", "site-1", "site-2", "site-3"]
    failing_slice = site_bucket(sites[0]) % 2
    stores = [FakeStore(fails=index == failing_slice) for index in range(2)]
    events = [event(sites[number % 4], number) for number in range(40)]
    assert {site_bucket(site) % 2 for site in sites} == {0, 1}
    with pytest.raises(DatabaseUnavailable):
        await slices_of(*stores).write([b"r"] * len(events), events)
    assert len(stores[1 - failing_slice].written) == sum(
        site_bucket(each.site_id) % 2 != failing_slice for each in events
    )


async def test_refused_records_are_bisected_within_their_slice() -> None:
    events = [event(f"site-{number % 5}", number) for number in range(50)]
    raw = [f"{number}".encode() for number in range(50)]
    bad = "site-3"
    stores = [FakeStore(refused_site=bad), FakeStore(refused_site=bad)]
    inserted, refused = await slices_of(*stores).write(raw, events)
    assert inserted == 40
    assert sorted(int(data) for data, _ in refused) == [number for number in range(50) if number % 5 == 3]


async def test_the_stores_close_when_the_last_lane_releases_them() -> None:
    stores = [FakeStore(), FakeStore()]
    slices = slices_of(*stores)
    slices.attach()
    slices.attach()
    await slices.release()
    assert not any(store.closed for store in stores)
    await slices.release()
    assert all(store.closed for store in stores)
