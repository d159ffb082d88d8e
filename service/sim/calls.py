"""The simulator's call log: every call to an upstream endpoint, in arrival order, and the
busiest sliding window among a selection of them (what the rate-ceiling tests read).

A submit's entry also keeps the number it carried (its digits, or None when it carried none
that could be read) and the task_id the simulator answered it with (None for an answer that made
no task: a final answer at once, a refusal, a fault), so a test can tell from upstream's side how
many times each number was submitted and which task each submit made."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from enum import StrEnum


class Endpoint(StrEnum):
    SUBMIT = "submit"  # POST /check/phone_number/o1
    TASK_RESULT = "task_result"  # POST /check/phone_number/task_result/o1


class CallLog:
    """Every call to an upstream endpoint, in arrival order, kept compact for millions of calls."""

    def __init__(self) -> None:
        self.at: array[float] = array("d")
        self.endpoints: list[Endpoint] = []
        self.task_ids: list[str | None] = []
        self.labels: list[str] = []
        self.phone_numbers: list[str | None] = []
        self.answered_task_ids: list[str | None] = []

    def record(
        self,
        at: float,
        endpoint: Endpoint,
        task_id: str | None,
        label: str,
        *,
        phone_number: str | None = None,
        answered_task_id: str | None = None,
    ) -> None:
        self.at.append(at)
        self.endpoints.append(endpoint)
        self.task_ids.append(task_id)
        self.labels.append(label)
        self.phone_numbers.append(phone_number)
        self.answered_task_ids.append(answered_task_id)

    def select(
        self,
        since: float | None = None,
        until: float | None = None,
        endpoint: Endpoint | None = None,
        task_id: str | None = None,
    ) -> list[int]:
        """Indexes of the calls that match every given filter."""
        # Arrival times only ever grow within a run, so the time range is a bisect.
        start = 0 if since is None else bisect_left(self.at, since)
        stop = len(self.at) if until is None else bisect_left(self.at, until)
        return [
            i
            for i in range(start, stop)
            if (endpoint is None or self.endpoints[i] is endpoint)
            and (task_id is None or self.task_ids[i] == task_id)
        ]


def busiest_window(times: Sequence[float], window_s: float) -> tuple[int, float | None]:
    """The most calls that fall in any half-open window [t, t + window_s), and its start."""
    ordered = sorted(times)
    best, best_start, first = 0, None, 0
    for last, at in enumerate(ordered):
        while ordered[first] + window_s <= at:
            first += 1
        if last - first + 1 > best:
            best, best_start = last - first + 1, ordered[first]
    return best, best_start
