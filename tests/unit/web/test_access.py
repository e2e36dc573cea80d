"""Bearer tokens, CORS answers and client addresses: pure functions of their inputs."""

from __future__ import annotations

import re

import pytest

from analytics.web.access import SHARE_PREFIX, BearerTokens, Verdict, bearer, client_address, new_share_token
from analytics.web.cors import CorsPolicy


@pytest.mark.parametrize(
    ("header", "verdict"),
    [
        (None, Verdict.MISSING),
        ("", Verdict.MISSING),
        ("Bearer", Verdict.MISSING),
        ("Bearer   ", Verdict.MISSING),
        ("Token s3cret", Verdict.MISSING),
        ("Bearer s3cret", Verdict.ALLOWED),
        ("bearer s3cret", Verdict.ALLOWED),
        ("Bearer other", Verdict.ALLOWED),
        ("Bearer s3cre", Verdict.WRONG),
        ("Bearer s3cret2", Verdict.WRONG),
        ("Bearer S3CRET", Verdict.WRONG),
    ],
)
def test_bearer_tokens(header: str | None, verdict: Verdict) -> None:
    assert BearerTokens(["s3cret", "other"]).check(header) is verdict


def test_no_tokens_means_open() -> None:
    tokens = BearerTokens([])
    assert not tokens.required
    assert tokens.check(None) is Verdict.ALLOWED
    assert not tokens.accepts("anything")


@pytest.mark.parametrize(
    ("header", "token"),
    [(None, None), ("", None), ("Bearer", None), ("Basic abc", None), (" bearer  abc ", "abc"), ("Bearer a b", "a b")],
)
def test_bearer_reads_the_token_of_the_bearer_scheme_only(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


def test_share_tokens_are_marked_url_safe_and_unguessable() -> None:
    tokens = {new_share_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in tokens:
        assert token.startswith(SHARE_PREFIX)
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token[len(SHARE_PREFIX) :])


def test_cors_any_origin() -> None:
    policy = CorsPolicy(["*"], methods="POST", request_headers="content-type")
    assert policy.response_headers(None) == ()
    assert policy.response_headers(b"https://a.example") == [(b"access-control-allow-origin", b"*")]


def test_cors_listed_origins() -> None:
    policy = CorsPolicy(["https://a.example"], methods="GET", request_headers="authorization")
    assert policy.response_headers(b"https://a.example") == [
        (b"access-control-allow-origin", b"https://a.example"),
        (b"vary", b"origin"),
    ]
    assert policy.response_headers(b"https://a.example.evil") is None
    assert policy.preflight_headers(b"https://b.example") is None
    preflight = dict(policy.preflight_headers(b"https://a.example") or [])
    assert preflight[b"access-control-allow-methods"] == b"GET"


def test_cors_no_origins() -> None:
    policy = CorsPolicy([], methods="GET", request_headers="authorization")
    assert policy.response_headers(b"https://a.example") is None
    assert policy.response_headers(None) == ()


def test_client_address() -> None:
    scope = {"client": ("192.0.2.1", 5000)}
    forwarded = {b"x-forwarded-for": b"203.0.113.7, 198.51.100.4"}
    assert client_address(scope, forwarded, None) == "192.0.2.1"
    assert client_address(scope, forwarded, b"x-forwarded-for") == "198.51.100.4"
    assert client_address(scope, {}, b"x-forwarded-for") == "192.0.2.1"
    assert client_address({"client": None}, {}, None) == "unknown"
