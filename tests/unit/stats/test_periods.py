"""Periods and time-series buckets in any IANA zone, checked against brute force: every minute of the days in
question converted one by one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from analytics.stats.periods import Bucket, DateRange, buckets, day_start, months_before, resolve

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/Santiago",  # DST changes at midnight: some days have no 00:00, some have two
    "Australia/Lord_Howe",  # DST moves the clock by half an hour
]
# Days around each zone's DST changes in 2025 (and ordinary days): the edges are where time zones go wrong.
DAYS = [
    date(2025, 1, 15),
    date(2025, 3, 9),
    date(2025, 3, 30),
    date(2025, 4, 5),
    date(2025, 4, 6),
    date(2025, 9, 6),
    date(2025, 9, 7),
    date(2025, 9, 28),
    date(2025, 10, 5),
    date(2025, 10, 26),
    date(2025, 11, 2),
]
MINUTE = timedelta(minutes=1)


def minutes_around(day: date) -> list[datetime]:
    """Every UTC minute from two days before `day` to two days after: enough for any offset (±14 h)."""
    start = datetime.combine(day - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    return [start + MINUTE * n for n in range(5 * 24 * 60)]


def brute_day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first minute whose local date is `day` (every offset in use is a whole number of minutes)."""
    return next(moment for moment in minutes_around(day) if moment.astimezone(zone).date() == day)


def brute_hour_starts(day: date, zone: ZoneInfo) -> list[datetime]:
    """Minutes of `day` (local) at which the local hour changes, or the day begins."""
    found = []
    for moment in minutes_around(day):
        local = moment.astimezone(zone)
        if local.date() != day:
            continue
        before = (moment - MINUTE).astimezone(zone)
        new_hour = local.minute == 0 and (before.hour, before.utcoffset()) != (local.hour, local.utcoffset())
        if before.date() != day or new_hour:
            found.append(moment)
    return found


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize("day", DAYS, ids=str)
def test_a_local_day_starts_at_its_first_instant(zone_name: str, day: date) -> None:
    zone = ZoneInfo(zone_name)
    assert day_start(day, zone) == brute_day_start(day, zone)


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize("day", DAYS, ids=str)
def test_hour_buckets_are_the_local_hours(zone_name: str, day: date) -> None:
    zone = ZoneInfo(zone_name)
    series = buckets(DateRange(day, day, zone), "hour")
    assert [bucket.start for bucket in series] == brute_hour_starts(day, zone)
    assert [bucket.label for bucket in series] == [bucket.start.astimezone(zone).isoformat() for bucket in series]


@pytest.mark.parametrize(
    ("zone_name", "day", "hours"),
    [
        ("Europe/Berlin", date(2025, 3, 30), 23),
        ("Europe/Berlin", date(2025, 10, 26), 25),
        ("America/New_York", date(2025, 3, 9), 23),
        ("America/New_York", date(2025, 11, 2), 25),
        ("Asia/Kolkata", date(2025, 3, 30), 24),
        ("Pacific/Chatham", date(2025, 4, 6), 25),
    ],
)
def test_dst_days_have_23_or_25_hours(zone_name: str, day: date, hours: int) -> None:
    span = DateRange(day, day, ZoneInfo(zone_name))
    assert span.end - span.start == timedelta(hours=hours)
    assert len(buckets(span, "hour")) == hours


def test_half_and_quarter_hour_zones_start_their_days_off_the_utc_hour() -> None:
    assert day_start(date(2025, 6, 1), ZoneInfo("Asia/Kolkata")) == datetime(2025, 5, 31, 18, 30, tzinfo=UTC)
    assert day_start(date(2025, 6, 1), ZoneInfo("Asia/Kathmandu")) == datetime(2025, 5, 31, 18, 15, tzinfo=UTC)
    first_hours = buckets(DateRange(date(2025, 6, 1), date(2025, 6, 1), ZoneInfo("Asia/Kathmandu")), "hour")[:2]
    assert first_hours == [
        Bucket("2025-06-01T00:00:00+05:45", datetime(2025, 5, 31, 18, 15, tzinfo=UTC)),
        Bucket("2025-06-01T01:00:00+05:45", datetime(2025, 5, 31, 19, 15, tzinfo=UTC)),
    ]


def test_a_repeated_hour_is_two_buckets_labelled_by_their_offsets() -> None:
    labels = [
        bucket.label
        for bucket in buckets(DateRange(date(2025, 10, 26), date(2025, 10, 26), ZoneInfo("Europe/Berlin")), "hour")
    ]
    assert labels[2:4] == ["2025-10-26T02:00:00+02:00", "2025-10-26T02:00:00+01:00"]


@pytest.mark.parametrize("zone_name", ZONES)
def test_day_week_and_month_buckets_tile_the_range(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    span = DateRange(date(2025, 2, 26), date(2025, 4, 2), zone)
    days = buckets(span, "day")
    assert [bucket.label for bucket in days] == [(span.first + timedelta(n)).isoformat() for n in range(span.days)]
    assert [bucket.start for bucket in days] == [brute_day_start(date.fromisoformat(b.label), zone) for b in days]
    weeks = buckets(span, "week")
    assert [bucket.label for bucket in weeks] == [
        "2025-02-24",
        "2025-03-03",
        "2025-03-10",
        "2025-03-17",
        "2025-03-24",
        "2025-03-31",
    ]
    assert weeks[0].start == span.start
    assert weeks[1].start == brute_day_start(date(2025, 3, 3), zone)
    months = buckets(span, "month")
    assert [(bucket.label, bucket.start) for bucket in months] == [
        ("2025-02-01", span.start),
        ("2025-03-01", brute_day_start(date(2025, 3, 1), zone)),
        ("2025-04-01", brute_day_start(date(2025, 4, 1), zone)),
    ]


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("period", "anchor", "first", "last"),
    [
        ("day", date(2025, 3, 30), date(2025, 3, 30), date(2025, 3, 30)),
        ("7d", date(2025, 3, 2), date(2025, 2, 24), date(2025, 3, 2)),
        ("30d", date(2025, 3, 1), date(2025, 1, 31), date(2025, 3, 1)),
        ("month", date(2024, 2, 10), date(2024, 2, 1), date(2024, 2, 29)),
        ("6mo", date(2025, 3, 15), date(2024, 10, 1), date(2025, 3, 15)),
        ("12mo", date(2025, 1, 31), date(2024, 2, 1), date(2025, 1, 31)),
        ("year", date(2024, 6, 1), date(2024, 1, 1), date(2024, 12, 31)),
    ],
)
def test_periods_cover_their_local_days(period: str, anchor: date, first: date, last: date) -> None:
    assert resolve(period, anchor, BERLIN) == DateRange(first, last, BERLIN)


def test_all_and_custom() -> None:
    assert resolve("all", date(2025, 3, 1), BERLIN, first_seen=date(2024, 7, 4)) == DateRange(
        date(2024, 7, 4), date(2025, 3, 1), BERLIN
    )
    assert resolve("all", date(2025, 3, 1), BERLIN) == DateRange(date(2025, 3, 1), date(2025, 3, 1), BERLIN)
    custom = (date(2025, 1, 1), date(2025, 1, 10))
    assert resolve("custom", date(2025, 3, 1), BERLIN, custom=custom) == DateRange(*custom, BERLIN)


def test_the_previous_period_is_as_long_and_just_before() -> None:
    span = DateRange(date(2025, 3, 1), date(2025, 3, 31), BERLIN)
    assert span.previous() == DateRange(date(2025, 1, 29), date(2025, 2, 28), BERLIN)
    assert span.previous().end == span.start


def test_months_before_crosses_years() -> None:
    assert months_before(date(2025, 1, 31), 1) == date(2024, 12, 1)
    assert months_before(date(2025, 1, 31), 13) == date(2023, 12, 1)
    assert months_before(date(2024, 12, 5), -1) == date(2025, 1, 1)
