"""The report cells' pure parts (analytics/stats/reports.py): which report bounds fall on their 15-minute UTC grid
(on_cell_grid: every local hour, day, week and month start of today's zones, quarter-hour offsets and DST days
included; a zone's odd offset of the past is not, and such a report reads raw events), and how their hashes are
counted distinct."""

from __future__ import annotations

import struct
from datetime import date
from zoneinfo import ZoneInfo

import pytest

from analytics.stats.periods import DateRange, buckets
from analytics.stats.reports import distinct_hashes, on_cell_grid


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

    assert distinct_hashes(None) == 0
    assert distinct_hashes(b"") == 0
    assert distinct_hashes(elements(-5)) == 1
    assert distinct_hashes(elements(3, 1, 2**62) + elements(1, -(2**63), 3)) == 4
