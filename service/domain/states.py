"""The states a task, a webhook delivery and a check job can be in, the events a task's end (or a
subscription that phonebridge disables) produces, and why a subscription is disabled.

Each is defined once here and used everywhere: the tables' CHECK constraints, the API's schemas
(where they show as enums), the store's SQL and the webhook sender. A `StrEnum` member is its
value wherever it goes: JSON (orjson, pydantic), SQL parameters and f-strings.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """Where a registered task stands; every state but `pending` is final."""

    PENDING = "pending"
    COMPLETED = "completed"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Whether the task is done being polled: every state but `pending`."""
        return self is not TaskState.PENDING


class EventType(StrEnum):
    """What a client is told about: how its task ended (once per task), and that phonebridge
    disabled one of its subscriptions (once per disable)."""

    TASK_COMPLETED = "task.completed"
    TASK_EXPIRED = "task.expired"
    TASK_FAILED = "task.failed"
    JOB_COMPLETED = "job.completed"
    SUBSCRIPTION_DISABLED = "subscription.disabled"


# What a subscription takes when it names no event types: every task event. Operational events
# (`subscription.disabled`) go only to subscriptions that name them.
TASK_EVENT_TYPES: tuple[EventType, ...] = (
    EventType.TASK_COMPLETED,
    EventType.TASK_EXPIRED,
    EventType.TASK_FAILED,
)


class DisabledReason(StrEnum):
    """Why a subscription is disabled: its client disabled it, its endpoint answered 410, or
    every attempt failed for PHONEBRIDGE_WEBHOOK_DISABLE_AFTER_S."""

    CLIENT = "client"
    GONE = "gone"
    FAILING = "failing"


class DeliveryState(StrEnum):
    """Where one event's webhook to one subscription stands; `pending` retries."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# A cancelled task is the client's own doing, so it produces no event.
EVENT_TYPE_OF_STATE: dict[TaskState, EventType] = {
    TaskState.COMPLETED: EventType.TASK_COMPLETED,
    TaskState.FAILED: EventType.TASK_FAILED,
    TaskState.EXPIRED: EventType.TASK_EXPIRED,
}


class TaskSource(StrEnum):
    """How a task came to phonebridge: its task_id handed in, or its check submitted by us."""

    REGISTERED = "registered"
    SUBMITTED = "submitted"


class SubmissionState(StrEnum):
    """Where one `POST /v1/checks` stands. `submitting` is written and committed before upstream
    is called; a row still `submitting` after its lease is an outcome nobody knows."""

    SUBMITTING = "submitting"
    ANSWERED = "answered"
    UNKNOWN = "unknown"


class HintOutcome(StrEnum):
    """What one upstream callback (a hint) did."""

    MATCHED = "matched"  # a pending task of that client is due now
    EARLY = "early"  # no such task yet: remembered for its validity
    THROTTLED = "throttled"  # that task was hinted less than the minimum interval ago
    # A poll found that task's answer before its callback came: the callback was late, not lost.
    LATE = "late"
    UNKNOWN = "unknown"  # no such token, a finished task, or an unusable task_id


class ScheduledSubmitState(StrEnum):
    """Where a scheduled submit (a re-check's, service/store/scheduled_submits.py) stands. The
    sealed number is kept exactly while a submit can still be made: `standby` (the check's answer
    is not in yet), `waiting` (due at `due_at`) and `submitting` (written and committed before
    the call: a row still `submitting` after its lease is an outcome nobody knows, never
    submitted again)."""

    STANDBY = "standby"
    WAITING = "waiting"
    SUBMITTING = "submitting"
    DONE = "done"  # no submit is left to make
    UNKNOWN = "unknown"  # its last submit's outcome is unknown


class ScheduledSubmitPurpose(StrEnum):
    """Why a number is to be submitted: a re-check of a task, or a check job's item."""

    RECHECK = "recheck"
    JOB_ITEM = "job_item"


class JobState(StrEnum):
    """Where a check job stands (service.domain.job_lifecycle moves it). `queued`: started, none
    of its items taken for submission yet; `completed` and `cancelled` are final."""

    DRAFT = "draft"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Whether nothing can move the job any more: `completed` or `cancelled`."""
        return self in (JobState.COMPLETED, JobState.CANCELLED)


class JobItemState(StrEnum):
    """Where one accepted item of a check job stands. Only a `waiting` item is ever submitted;
    every other state is final for the item (its task, if it has one, goes on by itself)."""

    WAITING = "waiting"  # to be submitted (its number kept sealed in its scheduled submit)
    SUBMITTED = "submitted"  # upstream took it: its task is `task_pk`
    DUPLICATE = "duplicate"  # the same number as the item at `first_line`, which answers it
    CACHED = "cached"  # answered from this client's recent final answer (`cached_task_pk`)
    REFUSED = "refused"  # upstream refused the number (INVALID_ARGUMENT): no task, no answer
    UNKNOWN = "unknown"  # its submit's outcome is unknown (the worker died during the call)
    NOT_SUBMITTED = "not_submitted"  # its job was cancelled before it was submitted


class PausedReason(StrEnum):
    """Why a `paused` job is paused: its client paused it (only its client resumes it), or the
    system did (the client's daily check budget is spent, or upstream's account pause is open),
    and the system resumes it."""

    CLIENT = "client"
    BUDGET = "budget"
    UPSTREAM = "upstream"
