"""The README quotes the service's answers: each quoted body is what the service really sends."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx

from tests.helpers.factories import event

README = Path(__file__).resolve().parents[2] / "README.md"
# "`413` `{...}`": a status, then the body the README promises for it.
QUOTED_ANSWER = re.compile(r"`(\d{3})`\s+`(\{[^`]*\})`")


def quoted_answers() -> dict[int, object]:
    return {int(status): json.loads(body) for status, body in QUOTED_ANSWER.findall(README.read_text())}


async def test_the_readme_quotes_the_413_and_415_the_service_sends(api: httpx.AsyncClient) -> None:
    quoted = quoted_answers()
    too_large = await api.post("/api/ingestion/event", content=b"x" * (1024 * 1024 + 1))
    unsupported = await api.post(
        "/api/ingestion/event", content=json.dumps(event()), headers={"content-type": "application/xml"}
    )
    assert (too_large.status_code, too_large.json()) == (413, quoted[413])
    assert (unsupported.status_code, unsupported.json()) == (415, quoted[415])


async def test_the_readme_quotes_the_431_and_the_parsers_400(api: httpx.AsyncClient) -> None:
    quoted = quoted_answers()
    big_headers = await api.post("/api/ingestion/event", json=event(), headers={"x-padding": "p" * 40_000})
    assert (big_headers.status_code, big_headers.json()) == (431, quoted[431])

    port = api.base_url.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /api/ingestion/event HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body) == quoted[400]
