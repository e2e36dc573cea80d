"""What one result cell of a v2 report is computed from, and how its metrics are rounded."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

Number = int | float


@dataclass(slots=True)
class Tally:
    """The sums one result cell's metrics are computed from."""

    pageviews: int = 0
    events: int = 0
    visitors: int = 0
    users: int = 0
    visits: int = 0
    bounces: int = 0
    duration_us: int = 0
    visit_pageviews: int = 0

    def add_sums(self, other: Tally) -> None:
        """Every sum of `other` added, distinct counts apart (they do not add up)."""
        self.pageviews += other.pageviews
        self.events += other.events
        self.visits += other.visits
        self.bounces += other.bounces
        self.duration_us += other.duration_us
        self.visit_pageviews += other.visit_pageviews

    def metric(self, name: str) -> Number:
        """As the contract rounds them: bounce rate and duration to whole numbers, views per visit to 0.01."""
        if name == "bounce_rate":
            return half_up(Fraction(100 * self.bounces, self.visits)) if self.visits else 0
        if name == "visit_duration":
            return half_up(Fraction(self.duration_us, self.visits * 1_000_000)) if self.visits else 0
        if name == "views_per_visit":
            return half_up(Fraction(100 * self.visit_pageviews, self.visits)) / 100 if self.visits else 0.0
        value: int = getattr(self, name)
        return value


def half_up(fraction: Fraction) -> int:
    """Round half away from zero, exactly (Python's round() takes halves to even)."""
    magnitude = math.floor(abs(fraction) + Fraction(1, 2))
    return magnitude if fraction >= 0 else -magnitude
