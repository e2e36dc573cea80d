"""The v1 stats query string: validated, every problem reported at once, in the contract's shape."""

from __future__ import annotations

import re
from datetime import date
from typing import Final

import msgspec

from analytics.events.contract import SITE_ID_MAX, FieldError, InvalidInput

_DATE_SHAPE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATE_MESSAGE: Final = "date must be a real calendar date in YYYY-MM-DD format"


class StatsQuery(msgspec.Struct, frozen=True):
    site_id: str
    day: date | None


def parse_stats_query(site_id: str | None, day: str | None) -> StatsQuery:
    """Validate the query string; raise `InvalidInput` with every problem at once."""
    problems: list[FieldError] = []
    if not site_id:
        problems.append(FieldError("query.site_id", "site_id is required"))
    elif len(site_id) > SITE_ID_MAX:
        problems.append(FieldError("query.site_id", f"site_id must be at most {SITE_ID_MAX} characters"))
    elif "\x00" in site_id:
        problems.append(FieldError("query.site_id", "site_id must not contain NUL characters"))
    parsed_day: date | None = None
    if day is not None:
        try:
            if not _DATE_SHAPE.fullmatch(day):
                raise ValueError(day)
            parsed_day = date.fromisoformat(day)
        except ValueError:
            problems.append(FieldError("query.date", DATE_MESSAGE))
    if problems:
        raise InvalidInput(problems)
    assert site_id is not None
    return StatsQuery(site_id=site_id, day=parsed_day)
