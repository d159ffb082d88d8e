"""What an answer means for a person: the contract's verdict of each `phone_status`.

Lane B (issue 22 part 2) owns this module; this minimal copy only lets the re-checks branch run
alone, and is replaced by lane B's at merge.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    LIVE = "live"
    UNREACHABLE = "unreachable"
    DEAD = "dead"
    RETRY = "retry"


_VERDICT_OF_STATUS = {
    "ring": Verdict.LIVE,
    "connected": Verdict.LIVE,
    "busy": Verdict.LIVE,
    "turned_off": Verdict.UNREACHABLE,
    "outside_service_area": Verdict.UNREACHABLE,
    "empty": Verdict.DEAD,
    "line_abnormal": Verdict.RETRY,
    "temp_unavailable": Verdict.RETRY,
}


def verdict_of(phone_status: str) -> Verdict | None:
    """The verdict of a `phone_status`; None for a status the contract does not know."""
    return _VERDICT_OF_STATUS.get(phone_status)
