"""The report cells' pure parts (analytics/stats/cells.py): which report bounds fall on their 15-minute UTC grid
(on_cell_grid: every local hour, day, week and month start of today's zones, quarter-hour offsets and DST days
included; a zone's odd offset of the past is not, and such a report reads raw events), and how their hashes are
read and counted distinct."""

from __future__ import annotations

import struct
from datetime import date
from zoneinfo import ZoneInfo

import pytest

from analytics.stats.cells import on_cell_grid
from analytics.stats.periods import DateRange, buckets
from analytics.stats.sketch import DistinctSet, array_elements


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", "America/St_Johns"])
@pytest.mark.parametrize("interval", ["hour", "day", "week", "month"])
def test_every_bound_of_todays_zones_is_on_the_grid(zone: str, interval: str) -> None:
    # Chatham starts DST on 27 September 2026 (+12:45 to +13:45); St John's (-03:30) leaves it on 1 November.
    last = date(2026, 11, 2) if interval != "hour" else date(2026, 9, 28)
    span = DateRange(date(2026, 9, 26), last, ZoneInfo(zone))
    assert on_cell_grid([span.start, span.end, *(bucket.start for bucket in buckets(span, interval))])


def test_an_odd_offset_of_the_past_is_not() -> None:
    # Africa/Monrovia was -00:44:30 until 1972.
    assert not on_cell_grid([DateRange(date(1971, 6, 1), date(1971, 6, 1), ZoneInfo("Africa/Monrovia")).start])
    assert on_cell_grid([DateRange(date(1973, 6, 1), date(1973, 6, 1), ZoneInfo("Africa/Monrovia")).start])


def test_distinct_hashes_counts_each_hash_once_across_cells() -> None:
    def elements(*hashes: int) -> bytes:  # the elements of a bigint[]'s binary form: length, then the value
        return b"".join(struct.pack(">iq", 8, value) for value in hashes)

    def distinct(packed: bytes | None) -> int:
        return DistinctSet.of(array_elements(packed)).count

    assert distinct(None) == 0
    assert distinct(b"") == 0
    assert distinct(elements(-5)) == 1
    assert distinct(elements(3, 1, 2**62) + elements(1, -(2**63), 3)) == 4
    assert list(DistinctSet.of(array_elements(elements(3, 1, 3))).sorted_hashes()) == [1, 3]
