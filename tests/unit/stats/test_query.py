"""Validation of the stats query string."""

from __future__ import annotations

from datetime import date

import pytest

from analytics.events.contract import FieldError, InvalidInput
from analytics.stats.query import DATE_MESSAGE, StatsQuery, parse_stats_query


def test_site_and_day() -> None:
    assert parse_stats_query("site", "2025-11-12") == StatsQuery(site_id="site", day=date(2025, 11, 12))


def test_no_date_means_all_time() -> None:
    assert parse_stats_query("site", None) == StatsQuery(site_id="site", day=None)


@pytest.mark.parametrize("site_id", [None, ""])
def test_site_id_is_required(site_id: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_stats_query(site_id, None)
    assert caught.value.errors == [FieldError("query.site_id", "site_id is required")]


@pytest.mark.parametrize(
    "day",
    ["2025-13-45", "2025-02-30", "20251112", "2025-W46-3", "", "2025-11-12T00:00", "\uff12\uff10\uff12\uff15-11-12"],
)
def test_impossible_or_malformed_dates_are_refused(day: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_stats_query("site", day)
    assert caught.value.errors == [FieldError("query.date", DATE_MESSAGE)]


def test_both_problems_at_once() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_stats_query(None, "nope")
    assert [error.path for error in caught.value.errors] == ["query.site_id", "query.date"]


@pytest.mark.parametrize(("site_id", "message"), [("x" * 257, "at most 256"), ("a\x00b", "NUL")])
def test_site_ids_the_database_could_not_take_are_refused(site_id: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_stats_query(site_id, None)
    assert message in caught.value.errors[0].message
