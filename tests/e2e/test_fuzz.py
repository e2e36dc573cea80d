"""Fuzzing the real `analytics serve` process: schemathesis from its own OpenAPI document, and hostile bodies.

Pass criteria: no 500, no hang (every request has a timeout), every answer in the contract's shape and, for
schemathesis, matching the documented status codes and schemas; afterwards nothing valid was dead-lettered.
"""

from __future__ import annotations

import gzip
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.openapi import from_url
from schemathesis.specs.openapi.checks import positive_data_acceptance

from analytics.queue.keys import QueueKeys
from tests.helpers.databases import cloned_database
from tests.helpers.processes import base_environment, serve, wait_healthy

REQUEST_TIMEOUT_S = 10.0


class Target:
    def __init__(self, base_url: str, keys: QueueKeys) -> None:
        self.base_url = base_url
        self.keys = keys


@pytest.fixture(scope="module")
async def fuzz_database(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    async with cloned_database(postgres_url, template_database, "fuzz") as url:
        yield url


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, fuzz_database: str, redis_url: str) -> Iterator[Target]:
    """The api and a writer in one real process, on the suite's servers, under a key prefix of its own."""
    keys = QueueKeys(f"fuzz-{secrets.token_hex(6)}")
    environment = base_environment(
        DATABASE_URL=fuzz_database,
        REDIS_URL=redis_url,
        ANALYTICS_REDIS_PREFIX=keys.prefix,
        ANALYTICS_FLUSH_INTERVAL_MS="20",
        LOG_LEVEL="warning",
    )
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    with serve(workdir, environment, "--no-migrate") as (base_url, process):
        wait_healthy(base_url, process, 30)
        yield Target(base_url, keys)
        process.terminate()
        process.wait(timeout=30)
    log = (workdir / "serve.log").read_text()
    assert "unhandled error" not in log, log


@pytest.fixture(scope="module")
def api_schema(target: Target) -> Any:
    return from_url(f"{target.base_url}/api/openapi.json")


OPERATIONS = [
    ("/api/ingestion/event", "POST"),
    ("/api/ingestion/events", "POST"),
    ("/api/event", "POST"),
    ("/api/reporting/stats", "GET"),
    ("/api/v2/stats/aggregate", "GET"),
    ("/api/v2/stats/timeseries", "GET"),
    ("/api/v2/stats/breakdown", "GET"),
    ("/api/v2/stats/realtime", "GET"),
    ("/api/v2/sites", "GET"),
    ("/api/healthcheck", "GET"),
    ("/api/ready", "GET"),
]
NO_INPUT = {"/api/healthcheck", "/api/ready", "/api/v2/sites"}


def test_every_documented_operation_is_fuzzed(api_schema: Any) -> None:
    documented = {(operation.ok().path, operation.ok().method.upper()) for operation in api_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


# A schema cannot say everything these bodies must be: a timestamp must lie within a window of the server's clock
# (v2), and Plausible's body needs `name` or `n` (and the like). So data valid by the schema alone may be a 400 here,
# and acceptance of positive data is not checked on them; every other check is (no 5xx, documented statuses,
# responses matching their schemas), and the negative cases and the hostile bodies below still run.
CLOCK_BOUND = {"/api/ingestion/event", "/api/ingestion/events", "/api/event"}
# Likewise a v2 report's parameters depend on each other (from/to only with period=custom, from before to, at most
# ten years, a real IANA zone, known metric and property names inside free text): a schema-valid query may be a 400.
INTERDEPENDENT = {path for path, _ in OPERATIONS if path.startswith("/api/v2/stats/")}

# Health, readiness and the site list take no input, so there is nothing invalid to send them.
CASES = [(path, method, GenerationMode.POSITIVE) for path, method in OPERATIONS] + [
    (path, method, GenerationMode.NEGATIVE) for path, method in OPERATIONS if path not in NO_INPUT
]


@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_operation_conforms_to_its_openapi_document(
    api_schema: Any, path: str, method: str, mode: GenerationMode
) -> None:
    """schemathesis's checks: no 5xx, documented status codes, content types and headers, bodies match schemas."""
    operation = api_schema[path][method]

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode))
    def conforms(case: Any) -> None:
        excluded = [positive_data_acceptance] if path in CLOCK_BOUND | INTERDEPENDENT else []
        case.call_and_validate(timeout=REQUEST_TIMEOUT_S, excluded_checks=excluded)

    conforms()


# Hostile bodies, beyond what a schema describes.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
field_values = (
    json_values
    | st.text(min_size=1, max_size=3000)
    | st.sampled_from(["", "\x00", "a\x00b", "\ud7ff", "2025-11-12T19:30:01Z", "2025-13-45T00:00:00Z", "9" * 400])
)
event_like = st.dictionaries(
    st.sampled_from(["site_id", "event_type", "timestamp", "path", "user_id", "extra"]), field_values, max_size=6
)
hostile_bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    event_like.map(lambda value: json.dumps(value).encode()),
    st.lists(event_like, max_size=5).map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),  # invalid UTF-8, NUL bytes, anything
    st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
    st.integers(1, 200_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.integers(300, 5000).map(lambda digits: b'{"site_id": 1' + b"0" * digits + b"}"),  # huge numbers
    st.sampled_from([b'{"timestamp": 1e999}', b"[1e400]", b'{"site_id": -0.0e-99999}']),
    st.integers(1, 3_000_000).map(lambda size: json.dumps({"site_id": "s" * size}).encode()),  # long strings
)


def assert_contract_shape(response: httpx.Response) -> None:
    assert response.status_code in (202, 400, 413), response.text
    document = response.json()
    if response.status_code == 202:
        assert document["status"] == "queued"
    elif response.status_code == 400:
        assert document["status"] == "fail"
        assert document["errors"], document
        assert all(
            set(error) == {"path", "message"} and error["path"].startswith("body") for error in document["errors"]
        )
    else:
        assert document == {"status": "fail", "message": "request body exceeds 1048576 bytes"}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=hostile_bodies,
    path=st.sampled_from(["/api/ingestion/event", "/api/ingestion/events", "/api/event"]),
    content_type=st.sampled_from(["application/json", "text/plain;charset=UTF-8", None]),
    compress=st.booleans(),
)
def test_hostile_bodies_always_get_a_4xx_in_the_contract_shape(
    target: Target, body: bytes, path: str, content_type: str | None, compress: bool
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    if compress:
        body = gzip.compress(body, compresslevel=1)
        headers["content-encoding"] = "gzip"
    response = httpx.post(f"{target.base_url}{path}", content=body, headers=headers, timeout=REQUEST_TIMEOUT_S)
    assert_contract_shape(response)


async def test_nothing_valid_was_dead_lettered(target: Target, redis: aioredis.Redis) -> None:
    """Runs after the fuzzers (file order): whatever they got queued, the writer could store."""
    assert await redis.llen(target.keys.dead) == 0
