"""The counters and histograms of what workers and schedulers do, in each process's own registry.

They live in the process that sees the event (a poll, a webhook attempt, a claim) and are served
by that process's exporter port (service/observability/exporter.py). Labels are small closed sets
(an outcome kind, a status class, a step name): never a task id, a URL or an upstream code, so the
number of series stays bounded whatever the traffic.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

from service.domain.delivery import Delivered, DeliveryDecision, EndpointGone, RetryAt
from service.domain.states import DisabledReason, TaskState

# Upstream answers in tens of milliseconds when healthy and up to the call timeout (10 s) when not.
UPSTREAM_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From "on time" to "the backlog is hours behind".
SCHEDULE_DELAY_BUCKETS: Final = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
WEBHOOK_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)

POLLS = Counter(
    "phonebridge_polls",
    "Upstream task_result calls, by classified outcome.",
    ["outcome"],
)
UPSTREAM_LATENCY = Histogram(
    "phonebridge_upstream_request_duration_seconds",
    "Time from sending a task_result call to having its whole answer (or giving up).",
    buckets=UPSTREAM_BUCKETS,
)
POLL_SCHEDULE_DELAY = Histogram(
    "phonebridge_poll_schedule_delay_seconds",
    "How late each poll started: the call's start minus the task's next_poll_at.",
    buckets=SCHEDULE_DELAY_BUCKETS,
)
POLL_CLAIMS = Counter("phonebridge_poll_claims", "Tasks claimed (leased) for polling.")
DELIVERY_CLAIMS = Counter(
    "phonebridge_delivery_claims", "Webhook deliveries claimed (leased) for an attempt."
)
WEBHOOK_ATTEMPTS = Counter(
    "phonebridge_webhook_attempts",
    "Webhook attempts, by what followed (delivered, retrying, failed, endpoint_gone) and by the "
    "receiver's status class (2xx..5xx, or none when no answer arrived).",
    ["outcome", "status_class"],
)
WEBHOOK_LATENCY = Histogram(
    "phonebridge_webhook_attempt_duration_seconds",
    "Time from sending a webhook to its answer (or the failure).",
    buckets=WEBHOOK_BUCKETS,
)
WEBHOOK_TURNS = Counter(
    "phonebridge_webhook_turns",
    "Turns of paced subscriptions (max_rps), by where the delivery waited for its turn: in the "
    "worker (near), in its row (further off), or missed (too late: it takes another).",
    ["wait"],
)
SCHEDULER_STEP_FAILURES = Counter(
    "phonebridge_scheduler_step_failures",
    "Scheduler steps that raised (each is retried at its next interval).",
    ["step"],
)
TASKS_REGISTERED = Counter(
    "phonebridge_tasks_registered",
    "Tasks handed in by their task_id (POST /v1/tasks and its batch) that were new: a task_id "
    "registered again is not counted. Checks phonebridge submits count in phonebridge_submits.",
)
TASKS_FINISHED = Counter(
    "phonebridge_tasks_finished",
    "Tasks that reached a final state in a worker's write-back or the scheduler's deadline sweep, "
    "by that state (completed, expired, failed; a client's cancel is not counted).",
    ["state"],
)
CALL_SLOTS = Counter(
    "phonebridge_upstream_call_slots",
    "Slots taken on the shared rate ceiling's timeline: one per upstream call (poll or submit), "
    "and one per slot a call started too late to use. Its rate over "
    "phonebridge_upstream_effective_rps is how much of the ceiling is in use.",
)
CALLS_LATE_AT_WIRE = Counter(
    "phonebridge_upstream_calls_late_at_wire",
    "Upstream calls (polls and submits) that would have left after their slot's last moment, "
    "while the ceiling's timeline was booked ahead: nothing of them was sent, and each went again "
    "at a new slot. A steady rate means a process too busy to keep its calls on time.",
)
SUBSCRIPTIONS_DISABLED = Counter(
    "phonebridge_subscriptions_disabled",
    "Subscriptions phonebridge disabled, by reason (failing: every attempt failed for "
    "PHONEBRIDGE_WEBHOOK_DISABLE_AFTER_S; gone: the endpoint answered 410).",
    ["reason"],
)
RETENTION_PURGED = Counter(
    "phonebridge_retention_purged_tasks",
    "Finished tasks deleted by retention, with their events, deliveries and attempts.",
)

# The API's: upstream callbacks (hints) and checks submitted through POST /v1/checks.
HINTS = Counter(
    "phonebridge_hints",
    "Upstream callbacks received, by what they did (matched, early, throttled, late, unknown).",
    ["outcome"],
)
EARLY_HINTS_DROPPED = Counter(
    "phonebridge_early_hints_dropped",
    "Early hints (callbacks for task_ids not known yet) dropped, oldest first, to keep a client "
    "within PHONEBRIDGE_EARLY_HINTS_MAX.",
)
SUBMITS = Counter(
    "phonebridge_submits",
    "POST /v1/checks, by outcome (pending, finished, rejected, account_problem, rate_limited, "
    "unknown, unavailable; replayed for a repeated Idempotency-Key; refused when nothing was "
    "sent: the pause, the rate ceiling, no credentials; over_budget past the client's daily "
    "check budget).",
    ["outcome"],
)
JOB_ITEMS = Counter(
    "phonebridge_job_items",
    "Check job items whose submit ended, by what became of it: submitted (a task), refused "
    "(INVALID_ARGUMENT), unknown (the call may have reached upstream unanswered).",
    ["outcome"],
)
RECHECKS = Counter(
    "phonebridge_rechecks",
    "Re-checks (a check's number submitted again), by what upstream's answer meant: poll (taken, "
    "its task polled), answered (at once), give_up (refused, or outcome unknown: the task ends "
    "with the answer it had), later (nothing reached upstream: due again).",
    ["outcome"],
)
CHECKS_OVER_BUDGET = Counter(
    "phonebridge_checks_over_budget",
    "Upstream checks not made because the client's daily check budget was spent, by client id "
    "and kind (check: a POST /v1/checks answered 429; scheduled: a re-check or a job's item "
    "that waits for the budget).",
    ["client", "kind"],
)
CALLBACK_TRUST_CHANGES = Counter(
    "phonebridge_callback_trust_changes",
    "A client's upstream callbacks became trusted again or stopped being trusted (too many went "
    "missing: its checks are then polled as registered tasks).",
    ["to"],
)
DETECTION_LAG_BUCKETS: Final = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
DETECTION_LAG = Histogram(
    "phonebridge_detection_lag_seconds",
    "A completed task's first successful webhook minus the moment phonebridge learnt the answer "
    "may be ready (the hint that made it due, else the answer itself).",
    buckets=DETECTION_LAG_BUCKETS,
)

# Every label of the counters that alert rules watch exists from the start at 0, so the first
# event is an increase (a series that appears at 1 shows no increase in PromQL).
for _state in (TaskState.COMPLETED, TaskState.EXPIRED, TaskState.FAILED):
    TASKS_FINISHED.labels(state=_state)
for _reason in (DisabledReason.FAILING, DisabledReason.GONE):
    SUBSCRIPTIONS_DISABLED.labels(reason=_reason)
for _outcome in ("submitted", "refused", "unknown"):
    JOB_ITEMS.labels(outcome=_outcome)


def record_hint(outcome: str) -> None:
    HINTS.labels(outcome=outcome).inc()


def record_early_hints_dropped(count: int) -> None:
    EARLY_HINTS_DROPPED.inc(count)


def record_callback_trust(trusted: bool) -> None:
    CALLBACK_TRUST_CHANGES.labels(to="trusted" if trusted else "untrusted").inc()


def record_submit(outcome: str) -> None:
    SUBMITS.labels(outcome=outcome).inc()


def record_recheck(outcome: str) -> None:
    RECHECKS.labels(outcome=outcome).inc()


def record_over_budget(client_id: int, kind: str, count: int = 1) -> None:
    CHECKS_OVER_BUDGET.labels(client=str(client_id), kind=kind).inc(count)


def record_job_item(outcome: str) -> None:
    JOB_ITEMS.labels(outcome=outcome).inc()


def record_detection_lag(lag_s: float) -> None:
    DETECTION_LAG.observe(max(0.0, lag_s))


def status_class(status: int | None) -> str:
    """`2xx`..`5xx` for an HTTP answer, `none` when none arrived (timeout, refused, ...)."""
    if status is None or not 100 <= status <= 599:
        return "none"
    return f"{status // 100}xx"


def record_poll(outcome: str, latency_s: float, schedule_delay_s: float | None) -> None:
    POLLS.labels(outcome=outcome).inc()
    UPSTREAM_LATENCY.observe(latency_s)
    if schedule_delay_s is not None:
        # A task polled early (a released lease, a probe) is not late: it counts as on time.
        POLL_SCHEDULE_DELAY.observe(max(0.0, schedule_delay_s))


def record_webhook_attempt(outcome: str, status: int | None, latency_ms: int) -> None:
    WEBHOOK_ATTEMPTS.labels(outcome=outcome, status_class=status_class(status)).inc()
    WEBHOOK_LATENCY.observe(latency_ms / 1000)


def record_webhook_turns(*, in_worker: int = 0, in_row: int = 0, missed: int = 0) -> None:
    for wait, count in (("worker", in_worker), ("row", in_row), ("missed", missed)):
        if count:
            WEBHOOK_TURNS.labels(wait=wait).inc(count)


def webhook_outcome(decision: DeliveryDecision) -> str:
    """The `outcome` label of an attempt: what the decision after it was."""
    if isinstance(decision, Delivered):
        return "delivered"
    if isinstance(decision, RetryAt):
        return "retrying"
    if isinstance(decision, EndpointGone):
        return "endpoint_gone"
    return "failed"


def record_tasks_registered(count: int) -> None:
    if count > 0:
        TASKS_REGISTERED.inc(count)


def record_task_finished(state: TaskState) -> None:
    if state.is_final:
        TASKS_FINISHED.labels(state=state).inc()


def record_call_slots(count: int) -> None:
    if count > 0:
        CALL_SLOTS.inc(count)


def record_call_late_at_wire() -> None:
    CALLS_LATE_AT_WIRE.inc()


def record_disabled_subscription(reason: DisabledReason) -> None:
    SUBSCRIPTIONS_DISABLED.labels(reason=reason).inc()
