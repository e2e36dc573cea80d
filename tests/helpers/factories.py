"""Request bodies as clients send them: valid events with chosen fields, numbered events for counting."""

from __future__ import annotations

from typing import Any

from analytics.enrich.country import no_country
from analytics.enrich.pipeline import Enricher, Requester
from analytics.events.contract import Submission
from analytics.events.record import Event

NUMBERED_SITE = "faults"  # the site of `event_for`: every stored row of a fault test belongs to it


def event(**fields: Any) -> dict[str, Any]:
    """A valid event, with `fields` replacing or adding to the defaults."""
    base: dict[str, Any] = {
        "site_id": "site-abc-123",
        "event_type": "page_view",
        "path": "/pricing",
        "user_id": "user-xyz-789",
        "timestamp": "2025-11-12T19:30:01Z",
    }
    base.update(fields)
    return base


def event_for(number: int) -> dict[str, Any]:
    """Event `number` of `NUMBERED_SITE`: its user_id carries the number, so stored rows map back to requests."""
    return {
        "site_id": NUMBERED_SITE,
        "event_type": "page_view",
        "path": f"/page/{number % 50}",
        "user_id": f"u{number}",
        "timestamp": f"2025-11-12T19:30:01.{number % 1_000_000:06d}Z",
    }


CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
SALT = bytes(range(32))
BROWSER = Requester(CHROME, "81.2.69.160", None)
# After every timestamp the tests send, and before 24 hours have passed since: the contract's window holds them all.
RECEIVED_US = 1_800_000_000_000_000  # 2027-01-15T08:00:00Z


def queued(submission: Submission, requester: Requester = BROWSER) -> Event:
    """A submission as the api queues it, from a desktop Chrome with no country database."""
    event = Enricher(no_country).event(submission, requester, SALT)
    assert isinstance(event, Event), f"dropped as a bot: {event}"
    return event


def v1_fields(event: Event) -> tuple[str, str, str | None, str | None, int]:
    return event.site_id, event.event_type, event.path, event.user_id, event.ts_us
