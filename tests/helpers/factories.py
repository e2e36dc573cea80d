"""Request bodies as clients send them: valid events with chosen fields, numbered events for counting."""

from __future__ import annotations

from typing import Any

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
