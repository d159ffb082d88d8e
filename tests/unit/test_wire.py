"""Telling a request refused at the wire for lateness (service/wire.py) through the errors
aiohttp wraps it in, from any other failure."""

from __future__ import annotations

import aiohttp

from service.wire import TooLateForWire, too_late_for_wire


def test_lateness_is_found_however_deep_aiohttp_wrapped_it() -> None:
    inner = aiohttp.ClientOSError("write failed")
    inner.__cause__ = TooLateForWire()
    outer = aiohttp.ClientPayloadError("body")
    outer.__cause__ = inner
    assert too_late_for_wire(TooLateForWire())
    assert too_late_for_wire(outer)


def test_any_other_failure_is_not_lateness() -> None:
    error = aiohttp.ClientOSError("reset")
    error.__cause__ = ConnectionResetError()
    assert not too_late_for_wire(error)
    assert not too_late_for_wire(TimeoutError())
