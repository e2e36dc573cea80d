"""Waiting for something that becomes true, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], timeout_s: float = 5.0) -> T:
    """Poll `check` until it stops raising AssertionError, for at most `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return await check()
        except AssertionError:
            if asyncio.get_running_loop().time() >= deadline:
                raise
        await asyncio.sleep(0.02)
