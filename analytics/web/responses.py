"""The contract's response bodies as types: what the handlers encode is what the OpenAPI document describes."""

from __future__ import annotations

from typing import Literal

import msgspec

from analytics.events.contract import FieldError
from analytics.stats.rollups import SiteStats


class Fail(msgspec.Struct, frozen=True):
    """A refusal with one message: `fail` when the client must change something, `error` when it may retry."""

    status: Literal["fail", "error"]
    message: str


class Invalid(msgspec.Struct, frozen=True, kw_only=True):
    """Every problem in the request at once, each at its path (`body.site_id`, `body.3.timestamp`, `query.date`)."""

    status: Literal["fail"] = "fail"
    errors: list[FieldError]


class Queued(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["queued"] = "queued"


class QueuedCount(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["queued"] = "queued"
    count: int


class StatsFound(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["success"] = "success"
    data: SiteStats


class Healthy(msgspec.Struct, frozen=True):
    message: str


class ReadyState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`ready`, or `error` with a message naming what is down; `checks` maps each dependency to `up` or `down`."""

    status: Literal["ready", "error"]
    checks: dict[str, Literal["up", "down"]]
    message: str | None = msgspec.field(default=None)


class InternalError(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["error"] = "error"
    message: str = "Internal Server Error"
