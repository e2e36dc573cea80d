"""The cookieless visitor id: a keyed hash of who is asking, with a key (salt) that changes every UTC day and is
then deleted, so ids cannot be joined across days and the address cannot be recovered (Plausible's scheme)."""

from __future__ import annotations

import hmac
from typing import Final

VISITOR_HEX_DIGITS: Final = 16  # 64 bits: collisions stay negligible at millions of visitors a site and day


def visitor_id(salt: bytes, site_id: str, address: str, user_agent: str) -> str:
    """HMAC-SHA256 of site ‖ address ‖ User-Agent under the day's salt. NUL separates the parts: none may hold one
    (site_id and User-Agent are refused with NUL, an address is validated)."""
    message = f"{site_id}\x00{address}\x00{user_agent}".encode()
    return hmac.digest(salt, message, "sha256").hex()[:VISITOR_HEX_DIGITS]
