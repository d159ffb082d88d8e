"""A subscription's run of failures, and when it is disabled for it.

The contract: a subscription whose attempts have all failed for
PHONEBRIDGE_WEBHOOK_DISABLE_AFTER_S, counted from its first failed attempt after its last success,
is disabled (`disabled_reason` `failing`). phonebridge also waits until at least one delivery has
failed its whole retry schedule within that run, so an operator who sets the window shorter than
the schedule does not lose an endpoint before any delivery had all its chances (Svix's rule: "all
attempts failed for five days" with a schedule shorter than that).

The run is kept on the subscription's row (service/store/endpoint_health.py) and moved on by every
write-back of attempts (`after_attempts`); attempts of one write-back may be older than the run
already kept (another worker wrote later ones first), so each success only ends a run it comes
after.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class FailureRun:
    """A subscription's attempts since its last success."""

    last_success_at: datetime | None = None
    # The first failed attempt after the last success; None while the last attempt succeeded.
    failing_since: datetime | None = None
    failures_in_row: int = 0
    # Whether a delivery failed its whole retry schedule since `failing_since`.
    schedule_exhausted: bool = False


@dataclass(frozen=True)
class AttemptFact:
    """One attempt as the run counts it: when it started, whether it succeeded, and whether it
    was the last of its delivery's schedule (the delivery ended `failed`)."""

    at: datetime
    succeeded: bool
    exhausted_schedule: bool = False


HEALTHY = FailureRun()


def after_attempts(run: FailureRun, attempts: Iterable[AttemptFact]) -> FailureRun:
    """The run after these attempts (in any order)."""
    for attempt in sorted(attempts, key=lambda a: a.at):
        if attempt.succeeded:
            last = attempt.at
            if run.last_success_at is not None:
                last = max(last, run.last_success_at)
            if run.failing_since is None or attempt.at >= run.failing_since:
                run = FailureRun(last_success_at=last)
            else:
                # Older than the failures already counted: it ends no run.
                run = replace(run, last_success_at=last)
        else:
            run = FailureRun(
                last_success_at=run.last_success_at,
                failing_since=run.failing_since or attempt.at,
                failures_in_row=run.failures_in_row + 1,
                schedule_exhausted=run.schedule_exhausted or attempt.exhausted_schedule,
            )
    return run


def should_disable(run: FailureRun, now: datetime, disable_after_s: float) -> bool:
    """Whether a subscription with this run is disabled now: every attempt failed for
    `disable_after_s`, and a delivery failed its whole schedule meanwhile."""
    return (
        run.failing_since is not None
        and run.schedule_exhausted
        and now - run.failing_since >= timedelta(seconds=disable_after_s)
    )
