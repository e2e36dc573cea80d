"""A deterministic, roughly realistic event stream for the writer and stats benchmarks.

- 300 sites with Zipf-like traffic (site rank r gets a share proportional to 1/r: the busiest ~16 %, the last ~0.05 %);
- paths per site fall with rank (the busiest has 2,000, the smallest 20), page popularity Zipf-like within a site;
- visitors per site fall with rank (the busiest has 200,000); 15 % of events carry no user id;
- 80 % page_view, 15 % click, 5 % signup;
- timestamps in arrival order, as live traffic reaches the writer: a stream of n events spread over `days` days ending
  2025-11-30 gives event i a time in the i-th 1/n of that span (microsecond precision, jittered within its slot).

`VisitStream` is the same sites and paths made by visitors in visits, with every enriched field of an ingest v2 event
(source, UTM, country, device, browser, os, props): what the v2 reports group by. EventStream stays as it was, so
benchmarks comparing with earlier runs keep their input.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event

SITES: Final = 300
DAYS: Final = 90
END: Final = datetime(2025, 12, 1, tzinfo=UTC)
EVENT_TYPES: Final = ("page_view", "click", "signup")
EVENT_TYPE_WEIGHTS: Final = (80, 15, 5)
ANONYMOUS_SHARE: Final = 0.15


def site_id(rank: int) -> str:
    return f"site-{rank:04d}"


def site_paths() -> list[tuple[list[str], list[float]]]:
    """Each site's paths (the busiest has 2,000, the smallest 20) and their Zipf-like cumulative weights."""
    sites = []
    for rank in range(1, SITES + 1):
        count = max(20, 2000 // rank)
        paths = [f"/{section}/page-{n}" for n, section in zip(range(count), itertools.cycle(("blog", "docs", "shop")))]
        paths[0] = "/"
        sites.append((paths, list(itertools.accumulate(1 / (n + 1) for n in range(count)))))
    return sites


class EventStream:
    """`total` events over the last `days` days, in time order; the same seed gives the same events."""

    def __init__(self, seed: int, total: int, days: float = DAYS) -> None:
        self._random = random.Random(seed)
        self.total = total
        self._emitted = 0
        self._site_cum = list(itertools.accumulate(1 / rank for rank in range(1, SITES + 1)))
        self._paths = site_paths()
        self._users = [max(100, 200_000 // rank) for rank in range(1, SITES + 1)]
        span_us = round(days * 86_400 * 1_000_000)
        self._start_us = epoch_microseconds(END) - span_us
        self._slot_us = span_us / total

    def events(self, count: int) -> list[Event]:
        """The next `count` events of the stream (it may run past `total`: later times, same spacing)."""
        draw = self._random
        first = self._emitted
        self._emitted += count
        sites = draw.choices(range(SITES), cum_weights=self._site_cum, k=count)
        types = draw.choices(EVENT_TYPES, weights=EVENT_TYPE_WEIGHTS, k=count)
        records: list[Event] = []
        for index, (site, event_type) in enumerate(zip(sites, types, strict=True), first):
            paths, cum = self._paths[site]
            path = draw.choices(paths, cum_weights=cum)[0]
            user = None if draw.random() < ANONYMOUS_SHARE else f"u{site + 1}-{draw.randrange(self._users[site])}"
            timestamp = self._start_us + int((index + draw.random()) * self._slot_us)
            records.append(Event(site_id(site + 1), event_type, path, user, timestamp))
        return records

    def batches(self, count: int, size: int) -> Iterator[list[Event]]:
        """The next `count` events, `size` at a time."""
        for start in range(0, count, size):
            yield self.events(min(size, count - start))


# --- visits ----------------------------------------------------------------------------------------------------------

# Events a visit has, 1 to 8: 40 % single-page bounces, then geometric-ish (each further event 60 % as likely).
VISIT_LENGTHS: Final = tuple(range(1, 9))
VISIT_LENGTH_WEIGHTS: Final = (0.40, *(0.60 * 0.4 * 0.6**k / (1 - 0.6**7) for k in range(7)))
VISIT_MEAN_EVENTS: Final = sum(n * w for n, w in zip(VISIT_LENGTHS, VISIT_LENGTH_WEIGHTS, strict=True))
# Seconds between a visit's events: log-uniform from a few seconds to ten minutes (a visit never has a 30-min gap).
GAP_SECONDS: Final = (3.0, 600.0)
# After the landing page view: more page views, some clicks and signups (with props).
NEXT_EVENT_TYPES: Final = ("page_view", "click", "signup")
NEXT_EVENT_WEIGHTS: Final = (80, 15, 5)
CLICK_PROPS: Final = ('{"element":"cta"}', '{"element":"nav"}', '{"element":"footer"}')
SIGNUP_PROPS: Final = ('{"plan":"free"}', '{"plan":"free"}', '{"plan":"pro"}')
# A person makes visits over the stream: people per site = its visits x this (about 1.7 visits a person).
PEOPLE_PER_VISIT: Final = 0.6
USER_SHARE: Final = 0.20  # people logged in: their user_id is their visitor
UNKNOWN_COUNTRY_SHARE: Final = 0.01
# Zipf-ish (1/rank): the US about a quarter, Germany an eighth.
COUNTRIES: Final = (
    "US", "DE", "GB", "FR", "IN", "BR", "CA", "NL", "ES", "IT", "JP", "AU", "PL", "SE", "MX",
    "CH", "TR", "ID", "KR", "AT", "BE", "UA", "PT", "DK", "NO", "FI", "IE", "CZ", "AR", "SG",
)  # fmt: skip
# (device, browser, browser_version, os, os_version) as the service's ua-parser rules name them, and a weight.
AGENTS: Final = (
    (("desktop", "Chrome", "131", "Windows", "10"), 25),
    (("desktop", "Chrome", "131", "Mac OS X", "10.15"), 10),
    (("desktop", "Edge", "131", "Windows", "10"), 6),
    (("desktop", "Safari", "18", "Mac OS X", "10.15"), 6),
    (("desktop", "Firefox", "133", "Windows", "10"), 5),
    (("desktop", "Firefox", "133", "Ubuntu", None), 1),
    (("desktop", "Chrome", "131", "Linux", None), 1),
    (("mobile", "Mobile Safari", "18", "iOS", "18.1"), 18),
    (("mobile", "Chrome Mobile", "131", "Android", "10"), 18),
    (("mobile", "Samsung Internet", "27", "Android", "10"), 4),
    (("tablet", "Mobile Safari", "18", "iOS", "18.1"), 4),
    (("tablet", "Chrome", "131", "Android", "10"), 2),
)
# A visit's landing: (referrer, source, utm_source, utm_medium, utm_campaign, utm_term, utm_content) as the enricher
# stores them (the referrer without its query, its host without www. as the source, utm_source when tagged), and a
# weight. Later events of the visit are internal navigation: no referrer, no source, no UTM.
LANDINGS: Final = (
    ((None, None, None, None, None, None, None), 40),
    (("https://www.google.com/", "google.com", None, None, None, None, None), 28),
    (("https://www.bing.com/", "bing.com", None, None, None, None, None), 4),
    (("https://duckduckgo.com/", "duckduckgo.com", None, None, None, None, None), 3),
    (("https://news.ycombinator.com/", "news.ycombinator.com", None, None, None, None, None), 3),
    (("https://www.reddit.com/r/programming/", "reddit.com", None, None, None, None, None), 3),
    (("https://t.co/", "t.co", None, None, None, None, None), 2),
    (("https://l.facebook.com/", "l.facebook.com", None, None, None, None, None), 2),
    (("https://github.com/", "github.com", None, None, None, None, None), 2),
    (("https://www.linkedin.com/", "linkedin.com", None, None, None, None, None), 2),
    ((None, "newsletter", "newsletter", "email", "2025-11-digest", None, None), 5),
    (("https://www.google.com/", "google", "google", "cpc", "brand", "web analytics", "ad-1"), 4),
    (("https://t.co/", "twitter", "twitter", "social", "launch-week", None, "thread"), 2),
)
_DAY_US: Final = 86_400_000_000


def _unit(digest: bytes, offset: int) -> float:
    """Four bytes of a digest as a number in [0, 1)."""
    return int.from_bytes(digest[offset : offset + 4], "big") / 2**32


class VisitStream:
    """`total` events (about: whole visits) over the last `days` days before `end`, in time order, made by visitors
    making visits; the same seed gives the same events. What EventStream lacks for the v2 reports:

    - visits start uniformly over the span on sites drawn with EventStream's Zipf-like shares (1/rank); a visit is
      1-8 events (VISIT_LENGTH_WEIGHTS: 40 % single page views), GAP_SECONDS apart, the first a page view with its
      landing's referrer, source and UTM (LANDINGS: 40 % direct), the later ones page views, clicks and signups
      (props as JSON text) with no referrer; page views pick paths as EventStream does (same paths, same shape);
    - a visit's person is drawn uniformly from the site's people (PEOPLE_PER_VISIT, so some return); a person has
      a country (COUNTRIES, 1 % unknown), a device/browser/os (AGENTS) and, for USER_SHARE of them, a user_id that is
      also their visitor; the others' visitor is a cookieless 16-hex id that changes every UTC day, as the
      service's daily salt makes it (fixed for a visit by the day it starts);
    - visitors' ids include the seed: two streams share no visitor.

    Visits run past `end` by up to an hour; `visits_started` counts the visits begun so far.
    """

    def __init__(self, seed: int, total: int, days: float = DAYS, end: datetime = END) -> None:
        self._random = random.Random(seed)
        self._seed = seed
        self.total = total
        self.visits_started = 0
        self._site_cum = list(itertools.accumulate(1 / rank for rank in range(1, SITES + 1)))
        self._paths = site_paths()
        visits = max(1.0, total / VISIT_MEAN_EVENTS)
        harmonic = self._site_cum[-1]
        self._people = [max(20, round(visits / rank / harmonic * PEOPLE_PER_VISIT)) for rank in range(1, SITES + 1)]
        self._length_cum = list(itertools.accumulate(VISIT_LENGTH_WEIGHTS))
        self._country_cum = list(itertools.accumulate(1 / rank for rank in range(1, len(COUNTRIES) + 1)))
        self._agent_cum = list(itertools.accumulate(weight for _, weight in AGENTS))
        self._landing_cum = list(itertools.accumulate(weight for _, weight in LANDINGS))
        self._log_gaps = (math.log(GAP_SECONDS[0]), math.log(GAP_SECONDS[1]))
        span_us = round(days * 86_400 * 1_000_000)
        self._start_us = epoch_microseconds(end) - span_us
        self._slot_us = span_us / visits
        self._pending: list[tuple[int, int, Event]] = []  # (ts_us, order, event): begun visits' events to come
        self._order = 0
        self._next_start = self._visit_start(0)

    def _visit_start(self, visit: int) -> int:
        return self._start_us + int((visit + self._random.random()) * self._slot_us)

    def events(self, count: int) -> list[Event]:
        """The next `count` events of the stream, in time order (it may run past `total`: later, same spacing)."""
        records: list[Event] = []
        pending = self._pending
        while len(records) < count:
            if pending and pending[0][0] <= self._next_start:
                records.append(heapq.heappop(pending)[2])
            else:
                self._begin_visit(self._next_start)
                self.visits_started += 1
                self._next_start = self._visit_start(self.visits_started)
        return records

    def batches(self, count: int, size: int) -> Iterator[list[Event]]:
        """The next `count` events, `size` at a time."""
        for start in range(0, count, size):
            yield self.events(min(size, count - start))

    def _begin_visit(self, start_us: int) -> None:
        draw = self._random
        site = bisect.bisect(self._site_cum, draw.random() * self._site_cum[-1])
        person = draw.randrange(self._people[site])
        traits = hashlib.blake2b(f"{self._seed}/{site}/{person}".encode(), digest_size=16).digest()
        if _unit(traits, 0) < USER_SHARE:
            user_id: str | None = f"user-{self._seed}-{site + 1}-{person}"
            visitor = user_id
        else:
            user_id = None
            day = start_us // _DAY_US
            visitor = hashlib.blake2b(f"{self._seed}/{site}/{person}/{day}".encode(), digest_size=8).hexdigest()
        country = None
        if _unit(traits, 4) >= UNKNOWN_COUNTRY_SHARE:
            country = COUNTRIES[bisect.bisect(self._country_cum, _unit(traits, 8) * self._country_cum[-1])]
        device, browser, browser_version, os_name, os_version = AGENTS[
            bisect.bisect(self._agent_cum, _unit(traits, 12) * self._agent_cum[-1])
        ][0]
        landing = LANDINGS[bisect.bisect(self._landing_cum, draw.random() * self._landing_cum[-1])][0]
        length = VISIT_LENGTHS[bisect.bisect(self._length_cum, draw.random() * self._length_cum[-1])]
        paths, cum = self._paths[site]
        path = draw.choices(paths, cum_weights=cum)[0]
        timestamp = start_us
        for index in range(length):
            if index == 0:
                event_type, props = "page_view", None
                referrer, source, utm_source, utm_medium, utm_campaign, utm_term, utm_content = landing
            else:
                timestamp += int(math.exp(draw.uniform(*self._log_gaps)) * 1_000_000)
                event_type = draw.choices(NEXT_EVENT_TYPES, weights=NEXT_EVENT_WEIGHTS)[0]
                props = None
                if event_type == "page_view":
                    path = draw.choices(paths, cum_weights=cum)[0]
                else:
                    props = draw.choice(CLICK_PROPS if event_type == "click" else SIGNUP_PROPS)
                referrer = source = utm_source = utm_medium = utm_campaign = utm_term = utm_content = None
            event = Event(
                site_id(site + 1),
                event_type,
                path,
                user_id,
                timestamp,
                visitor=visitor,
                referrer=referrer,
                source=source,
                utm_source=utm_source,
                utm_medium=utm_medium,
                utm_campaign=utm_campaign,
                utm_term=utm_term,
                utm_content=utm_content,
                browser=browser,
                browser_version=browser_version,
                os=os_name,
                os_version=os_version,
                device=device,
                country=country,
                props=props,
            )
            heapq.heappush(self._pending, (timestamp, self._order, event))
            self._order += 1
