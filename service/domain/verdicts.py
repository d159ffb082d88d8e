"""What a finished check means for a person: the `verdict` of a result, from its `phone_status`.

A lender wants "is this number live?", not upstream's eight words; the contract's table ("Phone
numbers and what an answer means") is defined here once. A verdict is derived from its
`phone_status` and never stored apart from it: every surface that shows a result (a task, an
event, a webhook body, the portal, a job's result rows) asks `verdict_of`, so none can disagree.

How to extend: a status upstream adds is a `PhoneStatus` member (service/domain/answers.py) and
one line of `VERDICT_OF_STATUS`; the exhaustive test fails until it has its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from service.domain.answers import PhoneStatus


class Verdict(StrEnum):
    """What a person can do with an answer."""

    LIVE = "live"  # the number is in service and reached a phone
    UNREACHABLE = "unreachable"  # the number exists but the phone could not be reached now
    DEAD = "dead"  # no such subscriber
    RETRY = "retry"  # upstream says: try again later


VERDICT_OF_STATUS: Mapping[PhoneStatus, Verdict] = MappingProxyType(
    {
        PhoneStatus.RING: Verdict.LIVE,
        PhoneStatus.CONNECTED: Verdict.LIVE,
        PhoneStatus.BUSY: Verdict.LIVE,
        PhoneStatus.TURNED_OFF: Verdict.UNREACHABLE,
        PhoneStatus.OUTSIDE_SERVICE_AREA: Verdict.UNREACHABLE,
        PhoneStatus.EMPTY: Verdict.DEAD,
        PhoneStatus.LINE_ABNORMAL: Verdict.RETRY,
        PhoneStatus.TEMP_UNAVAILABLE: Verdict.RETRY,
    }
)


def verdict_of(phone_status: str) -> Verdict | None:
    """The verdict of an answer's `phone_status`; None for a status upstream does not document.

    Upstream may answer a status nobody has seen (its reference says to expect that), and it is
    passed on as it came. Its meaning is unknown, so it gets no verdict rather than a guess: `dead`
    would have a lender drop a customer, `live` would vouch for a number, and `retry` would spend
    re-checks (and the client's budget) on an answer that may never change. A client reads null
    as "look at phone_status yourself".
    """
    try:
        return VERDICT_OF_STATUS[PhoneStatus(phone_status)]
    except ValueError:
        return None


def with_verdict(task: dict[str, Any]) -> dict[str, Any]:
    """A task's JSON whose `result` carries its `verdict`: as given when it has one (or has no
    result), else a copy with the verdict of its `phone_status` added.

    For JSON written before results carried a verdict (events keep the task as it was when they
    were written); anything that is not a task with a result (another event's data) is left as
    it is."""
    result = task.get("result")
    if not isinstance(result, Mapping) or "verdict" in result:
        return task
    phone_status = result.get("phone_status")
    if not isinstance(phone_status, str):
        return task
    return {**task, "result": {**result, "verdict": verdict_of(phone_status)}}
