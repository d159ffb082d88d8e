"""OncePerInterval: a library's repeated failure logged once per interval, not once per retry."""

from __future__ import annotations

import logging

from service.logs import OncePerInterval


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record() -> logging.LogRecord:
    return logging.makeLogRecord({"msg": "error connecting in 'pool-1'"})


def test_the_first_record_passes_and_repeats_within_the_interval_do_not() -> None:
    clock = FakeClock()
    throttle = OncePerInterval(60.0, clock)
    assert throttle.filter(record())
    clock.now += 59.0
    assert not any(throttle.filter(record()) for _ in range(16))
    clock.now += 1.0
    assert throttle.filter(record())


def test_hold_starts_the_quiet_interval_when_the_failure_was_said_another_way() -> None:
    clock = FakeClock()
    throttle = OncePerInterval(60.0, clock)
    throttle.hold()
    assert not throttle.filter(record())
    clock.now += 60.0
    assert throttle.filter(record())
