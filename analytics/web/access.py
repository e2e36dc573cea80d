"""Who may do what: bearer tokens for the stats API, sites and rate limits for ingestion, and which address a request
comes from. CORS is applied by `web.cors`."""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Final

from starlette.types import Scope

from analytics.config import Settings
from analytics.web.cors import CorsPolicy
from analytics.web.ratelimit import TokenBuckets

logger = logging.getLogger(__name__)

# Marks a share link's token, so the api looks it up in the database only for tokens that can be one.
SHARE_PREFIX: Final = "share_"


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    MISSING = "missing"
    WRONG = "wrong"


class BearerTokens:
    """Checks `Authorization: Bearer <token>` against the configured tokens in constant time.

    Tokens are compared as SHA-256 digests, so the time taken says nothing about a token's length or prefix, and
    every configured token is compared, so it says nothing about which one came closest.
    """

    def __init__(self, tokens: Collection[str]) -> None:
        self._digests = [token_digest(token) for token in tokens]

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def accepts(self, token: str) -> bool:
        """Whether `token` is one of the configured tokens (none are configured: no token is)."""
        presented = token_digest(token)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return matched

    def check(self, authorization: str | None) -> Verdict:
        if not self._digests:
            return Verdict.ALLOWED
        token = bearer(authorization)
        if token is None:
            return Verdict.MISSING
        return Verdict.ALLOWED if self.accepts(token) else Verdict.WRONG


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for no header or another scheme."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_share_token() -> str:
    """A share link's secret: 32 random bytes, URL-safe, so the link is the whole credential."""
    return SHARE_PREFIX + secrets.token_urlsafe(32)


def client_address(scope: Scope, headers: dict[bytes, bytes], trusted_header: bytes | None) -> str:
    """The peer's address, or what the trusted proxy says it is (of a list, the last entry: the one it added)."""
    if trusted_header is not None:
        forwarded = headers.get(trusted_header)
        if forwarded:
            return forwarded.rsplit(b",", 1)[-1].strip().decode("latin-1")
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _ingest_cors(origins: Collection[str] = ("*",)) -> CorsPolicy:
    return CorsPolicy(origins, methods="POST", request_headers="content-type, content-encoding")


def _stats_cors(origins: Collection[str] = ()) -> CorsPolicy:
    return CorsPolicy(origins, methods="GET", request_headers="authorization")


@dataclass(frozen=True, slots=True)
class AccessRules:
    """Everything the api checks before it queues or answers; the defaults are open (and say so at start)."""

    ingest_cors: CorsPolicy = field(default_factory=_ingest_cors)
    stats_cors: CorsPolicy = field(default_factory=_stats_cors)
    tokens: BearerTokens = field(default_factory=lambda: BearerTokens(()))
    sites: frozenset[str] | None = None
    per_client: TokenBuckets | None = None
    per_site: TokenBuckets | None = None
    trusted_proxy_header: bytes | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessRules:
        return cls(
            ingest_cors=_ingest_cors(settings.cors_origins),
            stats_cors=_stats_cors(settings.stats_cors_origins),
            tokens=BearerTokens(settings.api_tokens),
            sites=frozenset(settings.sites) if settings.sites else None,
            per_client=TokenBuckets(settings.rate_limit_ip, settings.rate_limit_ip_burst)
            if settings.rate_limit_ip
            else None,
            per_site=TokenBuckets(settings.rate_limit_site, settings.rate_limit_site_burst)
            if settings.rate_limit_site
            else None,
            trusted_proxy_header=settings.trusted_proxy_header.encode() if settings.trusted_proxy_header else None,
        )

    def warn_if_open(self) -> None:
        """Open is the default, so it is said once at start rather than discovered later."""
        if not self.tokens.required:
            logger.warning("stats API open to anyone: set ANALYTICS_API_TOKENS to require a bearer token")
        if self.sites is None:
            logger.warning("ingestion accepts any site_id: set ANALYTICS_SITES to accept only yours")
