"""Answers that keep their deadline whatever a backend does: work not done in time is abandoned, not awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


def abandon(future: asyncio.Future[Any]) -> None:
    """Cancel without waiting: asyncpg's cancellation of a query sends a cancel request to the server and waits for
    it, so awaiting it (as `asyncio.wait_for` does) takes as long as a frozen server stays frozen."""
    future.cancel()
    future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved


async def within(timeout_s: float, awaitable: Awaitable[T]) -> T:
    """Await `awaitable` for at most `timeout_s`, raising `TimeoutError` then and abandoning (not awaiting) it."""
    future = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({future}, timeout=timeout_s)
    if not done:
        abandon(future)
        raise TimeoutError(f"no answer within {timeout_s:g} s")
    return future.result()
