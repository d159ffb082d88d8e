"""The wall clock the edges read. Decisions take `now` as a parameter; processes pass `utc_now`
and tests pass a clock they control."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
