"""Waiting for something another thread, process or event loop does: the one synchronous and
the one asynchronous way, each failing with a message rather than hanging."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1
) -> Any:
    """Check `condition` every `interval_s` until it is truthy and return its value; fail naming
    `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
    return value


async def wait_until_async(
    condition: Callable[[], Any],
    *,
    timeout_s: float = 15.0,
    interval_s: float = 0.05,
    what: str = "the condition",
) -> Any:
    """Check an (async) condition every `interval_s` until it is truthy and return its value;
    fail naming `what` after `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval_s)
