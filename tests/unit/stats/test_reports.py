"""The pure parts of v2 reports: rounding as the contract rounds, changes, and SQL that request text never reaches."""

from __future__ import annotations

import dataclasses
from datetime import date
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from analytics.stats.params import DIMENSIONS, Filter, parse_report_query
from analytics.stats.periods import DateRange
from analytics.stats.reports import Statement, change, event_metrics_sql, visit_metrics_sql
from analytics.stats.tally import Tally, half_up

SPAN = DateRange(date(2026, 3, 1), date(2026, 3, 31), ZoneInfo("Europe/Berlin"))


def test_halves_round_away_from_zero() -> None:
    assert [half_up(Fraction(n, 2)) for n in (-3, -1, 0, 1, 3, 5)] == [-2, -1, 0, 1, 2, 3]
    assert half_up(Fraction(2, 3)) == 1
    assert half_up(Fraction(-1, 3)) == 0


def test_metrics_from_tallies() -> None:
    tally = Tally(visits=3, bounces=1, duration_us=100_500_000, visit_pageviews=5)
    assert tally.metric("bounce_rate") == 33
    assert tally.metric("visit_duration") == 34  # 33.5 s
    assert tally.metric("views_per_visit") == 1.67
    assert Tally().metric("views_per_visit") == 0.0
    assert Tally().metric("bounce_rate") == 0


def test_changes() -> None:
    assert change(150, 100, "pageviews") == 50.0
    assert change(1, 3, "visitors") == -66.7
    assert change(5, 0, "visits") is None
    assert change(40, 55, "bounce_rate") == -15


names = st.sampled_from([*DIMENSIONS, "props.plan"])
texts = st.text(alphabet="§¶†‡", min_size=1, max_size=8)  # no character any SQL template holds
rules = st.lists(
    st.builds(Filter, names, st.sampled_from(["==", "!=", "~"]), st.lists(texts, min_size=1, max_size=3).map(tuple)),
    max_size=4,
)


@given(rules=rules, prop=st.one_of(st.none(), names, texts.map(lambda key: f"props.{key}")))
def test_request_text_reaches_the_database_only_as_parameters(rules: list[Filter], prop: str | None) -> None:
    query = dataclasses.replace(parse_report_query("aggregate", {"site_id": "§"}), filters=tuple(rules), property=prop)
    for build in (event_metrics_sql, visit_metrics_sql):
        statement = Statement("§", SPAN, [SPAN.start])
        sql = build(query, statement)
        assert not set(sql) & set("§¶†‡"), sql
        sent = set()
        for arg in statement.args:
            sent |= set(arg) if isinstance(arg, list) else {arg}
        assert {rule.values[0] for rule in rules} <= sent
        if prop is not None and prop.startswith("props."):
            assert prop.removeprefix("props.") in sent
