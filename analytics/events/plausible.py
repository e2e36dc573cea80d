"""Plausible's Events API body (`POST /api/event`), as its tracker script sends it, read into Submissions of the
v2 contract: so a site can point an unchanged Plausible script at this service.

The script sends one-letter keys (`n` name, `u` url, `d` domain, `r` referrer, `p` props, `h` hash routing);
the documented Events API spells them out. `domain` may list several sites, comma-separated: one event each.
`pageview` is a `page_view`; the time is the receive time (the body has none); a `www.` before a domain is
dropped, as Plausible drops it. Props are kept as Plausible keeps them (see `_props`), where the v2 contract would
refuse the event. Plausible's `engagement` events (time on page, scroll depth, sent as a visitor leaves a page)
carry nothing this service reports: answered, not stored. `revenue` and `interactive` are accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import msgspec

from analytics.events.contract import (
    EPOCH,
    ONE_MICROSECOND,
    PROP_KEY_MAX,
    PROP_VALUE_MAX,
    PROPS_MAX_KEYS,
    FieldError,
    InvalidInput,
    Submission,
    submission_of,
)

PAGEVIEW: Final = "pageview"
IGNORED_NAMES: Final = frozenset({"engagement"})
# Where a problem of the mapped event is reported: at the field the Plausible body used.
FIELD_NAMES: Final = {"site_id": "domain", "event_type": "name", "path": "url"}

TEXT: Final = {"type": ["string", "null"]}
Text = Annotated[Any, msgspec.Meta(extra_json_schema=TEXT)]
TEXT_FIELDS: Final = ("name", "n", "url", "u", "domain", "d", "referrer", "r")
# What Plausible keeps the event for whatever it holds: described, not constrained (a bad prop is dropped, not a 400).
PropsOrJson = Annotated[
    Any, msgspec.Meta(extra_json_schema={"description": "an object, or a string holding one; other values ignored"})
]
Flag = Annotated[Any, msgspec.Meta(extra_json_schema={"description": "truthy or not"})]


class PlausibleEvent(msgspec.Struct, frozen=True):
    """Plausible's Events API body: long names, or the one-letter keys its script sends. name, url and domain are
    required (in either spelling); unknown fields are ignored. Values are checked by the v2 contract's rules once
    mapped (`props` as a JSON object, or a string holding one)."""

    name: Text = None
    n: Text = None
    url: Text = None
    u: Text = None
    domain: Annotated[Any, msgspec.Meta(extra_json_schema=TEXT | {"description": "Site id(s), comma-separated"})] = None
    d: Text = None
    referrer: Text = None
    r: Text = None
    props: PropsOrJson = None
    p: PropsOrJson = None
    meta: PropsOrJson = None
    m: PropsOrJson = None
    hashMode: Flag = None  # Plausible's spelling
    h: Flag = None
    revenue: Annotated[Any, msgspec.Meta(extra_json_schema={"description": "Accepted and ignored"})] = None
    interactive: Flag = None
    i: Flag = None


_decode = msgspec.json.Decoder(PlausibleEvent).decode
_decode_any = msgspec.json.Decoder().decode


def _props(value: Any) -> dict[str, Any] | None:
    """The props Plausible would keep, within this service's limits: as Plausible does, a prop whose value is
    empty, null, a list or an object is dropped rather than failing the event (its script does not retry); a
    value is cut to 256 characters, a key past 64 is dropped, and only the first 30 are kept. Older scripts send
    props as a JSON-encoded string."""
    if isinstance(value, str):
        try:
            value = _decode_any(value.encode())
        except (msgspec.DecodeError, UnicodeEncodeError, RecursionError):
            return None
    if not isinstance(value, dict):
        return None
    kept: dict[str, Any] = {}
    for key, prop in value.items():
        if len(kept) == PROPS_MAX_KEYS:
            break
        if not 0 < len(key) <= PROP_KEY_MAX or "\x00" in key:
            continue
        if isinstance(prop, str):
            if prop and "\x00" not in prop:
                kept[key] = prop[:PROP_VALUE_MAX]
        elif isinstance(prop, bool | int | float):
            kept[key] = prop
    return kept or None


def decode_plausible(body: bytes, received_us: int) -> list[Submission]:
    try:
        document = _decode(body)
    except msgspec.ValidationError:
        raise InvalidInput([FieldError("body", "body must be a JSON object")]) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        raise InvalidInput([FieldError("body", f"body is not valid JSON: {error}")]) from None
    problems = [
        FieldError(f"body.{field}", f"{field} must be a string")
        for field in TEXT_FIELDS
        if not isinstance(getattr(document, field), str | None)
    ]
    if problems:
        raise InvalidInput(problems)
    name = document.n if document.name is None else document.name
    url = document.u if document.url is None else document.url
    domain = document.d if document.domain is None else document.domain
    if not isinstance(name, str) or not name:
        problems.append(FieldError("body.name", "name is required"))
    if not isinstance(url, str) or not url:
        problems.append(FieldError("body.url", "url is required"))
    sites = [site.strip().removeprefix("www.") for site in domain.split(",")] if isinstance(domain, str) else []
    sites = [site for site in sites if site]
    if not sites:
        problems.append(FieldError("body.domain", "domain is required"))
    if problems:
        raise InvalidInput(problems)
    if name in IGNORED_NAMES:
        return []
    path: str | None = None
    if document.h or document.hashMode:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is not None and parts.fragment:
            path = f"{parts.path or '/'}#{parts.fragment}"
    timestamp = (EPOCH + received_us * ONE_MICROSECOND).isoformat()
    submissions: list[Submission] = []
    for site_id in sites:
        event = {
            "site_id": site_id,
            "event_type": "page_view" if name == PAGEVIEW else name,
            "timestamp": timestamp,
            "url": url,
            "path": path,
            "referrer": document.r if document.referrer is None else document.referrer,
            "props": _props(next((v for v in (document.props, document.p, document.meta, document.m) if v), None)),
        }
        try:
            submissions.append(submission_of(event, received_us))
        except InvalidInput as invalid:
            # dict.fromkeys: a path derived from the url (hash mode) repeats the url's own problem
            raise InvalidInput(list(dict.fromkeys(_renamed(error) for error in invalid.errors))) from None
    return submissions


def _renamed(error: FieldError) -> FieldError:
    prefix, _, rest = error.path.partition(".")
    field, dot, tail = rest.partition(".")
    name = FIELD_NAMES.get(field, field)
    return FieldError(f"{prefix}.{name}{dot}{tail}", error.message.replace(field, name, 1))
