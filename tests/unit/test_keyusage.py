"""When API keys were last used (service/api/keyusage.py): written down once per interval and
key, off the request's path, and a failed write is never the request's problem."""

from __future__ import annotations

import pytest

from service.api.keyusage import KeyUsage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_due_once_per_interval_and_each_key_on_its_own() -> None:
    clock = Clock()
    usage = KeyUsage(interval_s=60.0, monotonic=clock)

    first = [usage.due(1), usage.due(1), usage.due(2)]
    clock.now += 59.0
    within = usage.due(1)
    clock.now += 1.0
    after = usage.due(1)

    assert first == [True, False, True]
    assert (within, after) == (False, True)


async def test_a_failed_write_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    usage = KeyUsage()
    written: list[int] = []

    async def fails() -> None:
        raise ConnectionError("database away")

    async def writes() -> None:
        written.append(1)

    usage.spawn(fails())
    usage.spawn(writes())
    await usage.drain()

    assert written == [1]
    assert "api_key.last_used_not_recorded" in caplog.messages
