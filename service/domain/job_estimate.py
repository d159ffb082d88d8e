"""A running check job's `estimated_finish_at`: when its last item should have its final answer,
from what remains and the rate at which its items are submitted.

Pure. The rule:
- Only a queued or running job has an estimate: a draft has not started, a paused job waits for
  something no rate foretells (its client, midnight's budget, upstream), and a finished job has
  its `finished_at`. Otherwise None, as when no rate is known.
- The rate (items a second) is the job's observed submit rate when there is one (it already
  holds the job's share of the ceiling, beside interactive work and other clients' jobs), else
  the rate available to it (`available_item_rate`), as for a job whose first submits are yet to
  come.
- Finish = now + items left to submit / rate + the time an item takes from its submit to its
  final answer (the caller passes the typical one, re-checks included when the job has them).
  With nothing left to submit, only that answer time remains, even for a single pending item.
- Never before now, and none past `HORIZON_S` (a year: a rate that small says nothing); rounded
  up to the whole second (an estimate has no use for microseconds). Nothing left at all: now.
- A budget that will run out before the end is not foreseen: the job is paused then, and has no
  estimate until it runs again.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from service.domain.job_lifecycle import JobStatus, submits_allowed

HORIZON_S = 366 * 24 * 3600.0


def available_item_rate(
    *, ceiling_per_s: float, interactive_per_s: float, active_jobs: int, calls_per_item: float
) -> float:
    """Items a second that one job can expect: the upstream calls a second that interactive work
    leaves, shared evenly by the active jobs, divided by the calls an item costs (its submit and
    its polls; about 2.2 with callbacks)."""
    if calls_per_item <= 0:
        raise ValueError(f"calls_per_item must be positive, not {calls_per_item}")
    left = max(ceiling_per_s - interactive_per_s, 0.0)
    return left / max(active_jobs, 1) / calls_per_item


def estimated_finish_at(
    *,
    now: datetime,
    status: JobStatus,
    left_to_submit: int,
    pending: int,
    observed_item_rate: float | None,
    available_item_rate: float,
    answer_time_s: float,
) -> datetime | None:
    """When the job should be done, by the rule above; None when it cannot be said."""
    if not submits_allowed(status):
        return None
    if left_to_submit < 0 or pending < 0 or not 0 <= answer_time_s < math.inf:
        raise ValueError("counts and the answer time must be finite and not negative")
    if left_to_submit == 0 and pending == 0:
        return _whole_second_after(now, 0.0)
    rate = observed_item_rate if observed_item_rate else available_item_rate
    if left_to_submit > 0 and not rate > 0:
        return None
    seconds = (left_to_submit / rate if left_to_submit else 0.0) + answer_time_s
    if seconds > HORIZON_S:
        return None
    return _whole_second_after(now, seconds)


def _whole_second_after(now: datetime, seconds: float) -> datetime:
    moment = now + timedelta(seconds=seconds)
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)
