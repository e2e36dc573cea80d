"""Reporting periods in a site owner's time zone: which local days a period covers, the exact UTC instants that
bound them, and the buckets a time series is cut into. Pure functions over `zoneinfo`, so every IANA zone is exact:
DST days of 23 and 25 hours, half- and quarter-hour offsets, days whose midnight does not exist or happens twice.

A local day starts at the first instant whose local date is that day: local midnight, or, where a DST change skips
midnight, the first time after the gap (`fold=0` resolves a skipped time with the offset before the change, which
lands exactly there); where midnight happens twice, its first occurrence.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

PERIODS: Final = ("day", "7d", "30d", "month", "6mo", "12mo", "year", "all", "custom")
INTERVALS: Final = ("hour", "day", "week", "month")
DEFAULT_INTERVAL: Final = {
    "day": "hour",
    "7d": "day",
    "30d": "day",
    "month": "day",
    "custom": "day",
    "6mo": "month",
    "12mo": "month",
    "year": "month",
    "all": "month",
}
MAX_CUSTOM_DAYS: Final = 3653  # ten years, leap days included
MAX_HOURLY_DAYS: Final = 31  # an hourly series past a month is thousands of points: refused, not capped silently
ONE_DAY: Final = timedelta(days=1)


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant a local day begins (see the module's docstring for days without, or with two, midnights)."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class DateRange:
    """Local days `first` to `last`, both included, in `zone`."""

    first: date
    last: date
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return day_start(self.first, self.zone)

    @property
    def end(self) -> datetime:
        """The instant after the range: the start of the day after `last` (exclusive)."""
        return day_start(self.last + ONE_DAY, self.zone)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def previous(self) -> DateRange:
        """As many days, just before: what `compare=previous_period` compares with."""
        return DateRange(self.first - timedelta(days=self.days), self.first - ONE_DAY, self.zone)


def months_before(day: date, months: int) -> date:
    """The first day of the month `months` before `day`'s month."""
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def resolve(
    period: str, anchor: date, zone: ZoneInfo, custom: tuple[date, date] | None = None, first_seen: date | None = None
) -> DateRange:
    """The local days `period` covers. `anchor` is the request's `date` (default: today in the zone): the day of
    `day`, the month of `month`, the year of `year`, the last day of `7d`, `30d`, `6mo` and `12mo` (whose first
    day is the first of their first month). `all` runs from the site's first event (`first_seen`) to `anchor`."""
    if period == "day":
        return DateRange(anchor, anchor, zone)
    if period in ("7d", "30d"):
        return DateRange(anchor - timedelta(days=int(period[:-1]) - 1), anchor, zone)
    if period == "month":
        last = calendar.monthrange(anchor.year, anchor.month)[1]
        return DateRange(anchor.replace(day=1), anchor.replace(day=last), zone)
    if period in ("6mo", "12mo"):
        return DateRange(months_before(anchor, int(period[:-2]) - 1), anchor, zone)
    if period == "year":
        return DateRange(date(anchor.year, 1, 1), date(anchor.year, 12, 31), zone)
    if period == "all":
        return DateRange(min(first_seen or anchor, anchor), anchor, zone)
    if period == "custom" and custom is not None:
        return DateRange(custom[0], custom[1], zone)
    raise ValueError(f"unknown period {period!r}, or custom without its dates")


@dataclass(frozen=True, slots=True)
class Bucket:
    """One point of a time series: its label as the API shows it, and the UTC instant it begins."""

    label: str
    start: datetime


def buckets(span: DateRange, interval: str) -> list[Bucket]:
    """Every bucket of the series, in order; each ends where the next begins, the last at `span.end`. The first
    week or month bucket may begin before the range (a week is labelled by its Monday, a month by its 1st): it
    counts only the range's part, since the range bounds every query."""
    if interval == "day":
        return [Bucket(day.isoformat(), day_start(day, span.zone)) for day in _days(span.first, span.last)]
    if interval == "week":
        monday = span.first - timedelta(days=span.first.weekday())
        mondays = _days(monday, span.last, step=7)
        return [Bucket(day.isoformat(), max(day_start(day, span.zone), span.start)) for day in mondays]
    if interval == "month":
        firsts = _months(span.first.replace(day=1), span.last)
        return [Bucket(day.isoformat(), max(day_start(day, span.zone), span.start)) for day in firsts]
    if interval == "hour":
        return [Bucket(_local_label(start, span.zone), start) for start in _hour_starts(span)]
    raise ValueError(f"unknown interval {interval!r}")


def _days(first: date, last: date, step: int = 1) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=step)


def _months(first: date, last: date) -> Iterator[date]:
    month = first
    while month <= last:
        yield month
        month = months_before(month, -1)


def _hour_starts(span: DateRange) -> list[datetime]:
    """The instants at which a local hour begins within the range: a skipped hour has none, a repeated hour two
    (one per offset), and a zone that moves by half an hour still begins its hours at :00 local time."""
    starts: set[datetime] = set()
    for day in _days(span.first, span.last):
        for hour in range(24):
            for fold in (0, 1):
                local = datetime.combine(day, time(hour, fold=fold), tzinfo=span.zone)
                instant = local.astimezone(UTC)
                if instant.astimezone(span.zone).replace(tzinfo=None) == local.replace(tzinfo=None, fold=0):
                    starts.add(instant)  # the wall time exists (a skipped one comes back as another time)
    return sorted(start for start in starts if span.start <= start < span.end)


def _local_label(instant: datetime, zone: ZoneInfo) -> str:
    return instant.astimezone(zone).isoformat()
