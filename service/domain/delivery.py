"""What happens to a webhook delivery after one attempt: done, retried at a time, or given up.

Only a 2xx counts. Redirects are not followed, so a 3xx is a failure like any other. The wait
before each retry comes from PHONEBRIDGE_WEBHOOK_RETRY_SCHEDULE with ±20% jitter (so that many
deliveries failing together do not retry in lockstep); a `Retry-After` on 429 or 503 may lengthen
that wait, up to twice the scheduled delay, never shorten it. A 410 means the endpoint is gone for
good: the subscription is disabled. After the last scheduled retry fails the delivery is `failed`.

A delivery handed back unattempted, because its subscription already has its share in flight,
comes due again after about the time that share takes to drain (`postpone_s`). The share
itself follows how fast the endpoint answers (`subscription_share`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

JITTER = 0.2
# How much a Retry-After may stretch the scheduled delay.
RETRY_AFTER_MAX_FACTOR = 2.0
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE_STATUS = 410
# A delivery handed back because its subscription already has its share in flight comes due
# again after about the time that share takes to drain, and no sooner than this.
POSTPONE_S = 1.0
# A round of attempts at a healthy local endpoint is counted as at least this long, so that the
# share stays finite however fast it answers.
MIN_ROUND_S = 0.001


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt got back: an HTTP status, or none and the transport error."""

    status: int | None
    error: str | None = None
    retry_after: str | None = None


@dataclass(frozen=True)
class Delivered:
    """A 2xx arrived in time: the delivery succeeded."""


@dataclass(frozen=True)
class RetryAt:
    """The attempt failed and the schedule allows another one at `at`."""

    at: datetime
    delay_s: float
    error: str


@dataclass(frozen=True)
class GiveUp:
    """The last attempt of the schedule failed: the delivery is `failed`."""

    error: str


@dataclass(frozen=True)
class EndpointGone:
    """The receiver answered 410: the subscription is disabled and its deliveries stop."""

    error: str


DeliveryDecision = Delivered | RetryAt | GiveUp | EndpointGone


def is_success(status: int | None) -> bool:
    """Only a 2xx counts as delivered."""
    return status is not None and 200 <= status < 300


def attempts_allowed(schedule: Sequence[float]) -> int:
    """The attempts in one schedule: the first one plus one per scheduled delay."""
    return len(schedule) + 1


def describe_failure(outcome: AttemptOutcome) -> str:
    """A short, safe explanation of a failed attempt, for `last_error` and the attempt log."""
    if outcome.status is None:
        return outcome.error or "no answer"
    if 300 <= outcome.status < 400:
        return f"HTTP {outcome.status}: redirects are not followed"
    if outcome.status == GONE_STATUS:
        return "HTTP 410: the endpoint is gone; the subscription was disabled"
    return f"HTTP {outcome.status}"


def describe_test_attempt(outcome: AttemptOutcome) -> str | None:
    """What went wrong with a test event's attempt, in the attempt log's words; None when it was
    delivered. A test is sent once and changes nothing, so a 410 disables no subscription."""
    if is_success(outcome.status):
        return None
    if outcome.status == GONE_STATUS:
        return "HTTP 410: the endpoint says it is gone (a test event disables nothing)"
    return describe_failure(outcome)


def jittered(delay_s: float, rand: float) -> float:
    """`delay_s` moved by up to ±20%, `rand` being uniform in [0, 1)."""
    return delay_s * (1.0 - JITTER + 2.0 * JITTER * rand)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), if valid."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - now).total_seconds())


def next_retry_delay(
    schedule: Sequence[float],
    attempt_number: int,
    rand: float,
    status: int | None = None,
    retry_after_s: float | None = None,
) -> float:
    """The wait after the `attempt_number`-th attempt (1-based) of a schedule that allows a retry.

    The scheduled delay gets ±20% jitter; a Retry-After sent with 429 or 503 raises it to at most
    twice the scheduled delay.
    """
    scheduled = schedule[attempt_number - 1]
    delay = jittered(scheduled, rand)
    if retry_after_s is not None and status in RETRY_AFTER_STATUSES:
        delay = max(delay, min(retry_after_s, RETRY_AFTER_MAX_FACTOR * scheduled))
    return delay


def decide_after_attempt(
    outcome: AttemptOutcome,
    attempt_number: int,
    schedule: Sequence[float],
    now: datetime,
    rand: float,
) -> DeliveryDecision:
    """The delivery's fate after its `attempt_number`-th attempt (1-based) in the current schedule.

    `now` is when the attempt finished; `rand` is uniform in [0, 1) and drives the jitter.
    """
    if is_success(outcome.status):
        return Delivered()
    error = describe_failure(outcome)
    if outcome.status == GONE_STATUS:
        return EndpointGone(error)
    if attempt_number >= attempts_allowed(schedule):
        return GiveUp(error)
    delay = next_retry_delay(
        schedule,
        attempt_number,
        rand,
        status=outcome.status,
        retry_after_s=parse_retry_after(outcome.retry_after, now),
    )
    return RetryAt(at=now + timedelta(seconds=delay), delay_s=delay, error=error)


def postpone_s(
    in_flight: int, per_endpoint: int, latency_s: float, unanswered_s: float, ceiling_s: float
) -> float:
    """How long to hand back a delivery whose subscription has its full share in flight: about
    the time that share takes to drain, i.e. `in_flight / per_endpoint` rounds of attempts, each
    as long as the subscription's recent latency or as long as it has now gone without any
    answer, whichever is longer; within [POSTPONE_S, ceiling_s].

    A dead endpoint's deliveries are then claimed about once per drain instead of every second:
    that churn of claims and hand-backs was what slowed every other subscription's deliveries.
    A busy but healthy endpoint drains in well under a second and keeps POSTPONE_S."""
    rounds = in_flight / per_endpoint
    return min(ceiling_s, max(POSTPONE_S, rounds * max(latency_s, unanswered_s)))


def subscription_share(
    per_endpoint: int,
    lease_s: float,
    timeout_s: float,
    latency_s: float | None,
    unanswered_s: float,
    max_share: int,
) -> int:
    """How many of one subscription's deliveries a process holds at once (sending or waiting
    for a turn at the endpoint): as many rounds of `per_endpoint` concurrent attempts as fit in
    one lease, each round as long as the endpoint's recent latency or as long as it has now gone
    without an answer, whichever is longer; an endpoint not heard from yet (`latency_s` None) is
    assumed to take the whole `timeout_s`. Never fewer than the rounds of whole timeouts that fit
    in a lease (at least one), never more than `max_share`.

    A slow or dead endpoint's backlog thus stays in the database, claimable, and cannot fill the
    process; a healthy one's is sent in one go. Holding a healthy endpoint's backlog to one round
    (100 for the default 15 s timeout) handed back nine deliveries in ten of a burst to one
    subscription, each claimed and postponed about five times before its turn: 11.6 delivery rows
    written per event and ~110 webhooks/s per worker in bench/e2e.py, 2026-12-01."""
    timeout_rounds = max(1, int(lease_s // timeout_s))
    round_s = timeout_s if latency_s is None else max(latency_s, unanswered_s, MIN_ROUND_S)
    rounds = max(timeout_rounds, int(lease_s // round_s))
    return max(per_endpoint * timeout_rounds, min(max_share, per_endpoint * rounds))
