"""The public JSON shapes of the contract, shared by the REST API and the webhook payloads.

A task looks the same in `GET /v1/tasks/{id}`, in `GET /v1/events` and in a webhook body, and a
subscription the same in `GET /v1/subscriptions/{id}` and in its `subscription.disabled` event,
so there is exactly one definition of each here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from service.domain.states import (
    DisabledReason,
    EventType,
    JobState,
    PausedReason,
    TaskSource,
    TaskState,
)
from service.domain.verdicts import Verdict, verdict_of


class TaskResult(BaseModel):
    phone_number: str = Field(
        description="The number as upstream's answer gives it, masked by upstream (e.g. "
        "`5255********`: its first digits). Not phonebridge's mask of a submitted number: "
        "that is the task's `phone_number_masked`."
    )
    phone_status: str = Field(
        description="One of ring, connected, empty, busy, turned_off, outside_service_area, "
        "line_abnormal, temp_unavailable; an unknown value from upstream is kept as given."
    )

    @computed_field(  # type: ignore[prop-decorator]
        description="What the answer means, from `phone_status` (never stored apart from it): "
        "`live` (ring, connected, busy: in service and reached a phone), `unreachable` "
        "(turned_off, outside_service_area: exists, but the phone could not be reached now), "
        "`dead` (empty: no such subscriber), `retry` (line_abnormal, temp_unavailable: upstream "
        "says try again later). null when `phone_status` is a value upstream does not document: "
        "its meaning is unknown, so phonebridge does not guess one."
    )
    @property
    def verdict(self) -> Verdict | None:
        return verdict_of(self.phone_status)


class TaskError(BaseModel):
    code: str
    message: str
    at: datetime


class RecheckAnswer(BaseModel):
    """The answer of an earlier upstream check of a task with re-checks."""

    task_id: str = Field(description="The upstream task that gave this answer.")
    phone_status: str
    at: datetime = Field(description="When the answer came.")


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    task_id: str
    state: TaskState
    result: TaskResult | None
    submitted_at: datetime
    registered_at: datetime
    expires_at: datetime
    completed_at: datetime | None
    next_poll_at: datetime | None
    poll_count: int
    last_error: TaskError | None
    upstream_request_id: str | None
    metadata: dict[str, Any]
    source: TaskSource = Field(
        default=TaskSource.REGISTERED,
        description="`registered`: its task_id was handed in (POST /v1/tasks); `submitted`: "
        "phonebridge submitted the check (POST /v1/checks).",
    )
    phone_number_masked: str | None = Field(
        default=None,
        description="phonebridge's mask of a submitted check's number: country code and last "
        "four digits only (e.g. `52******1234`); null for registered tasks. Upstream's own "
        "mask of the number is `result.phone_number`.",
    )
    rechecks: list[RecheckAnswer] = Field(
        default_factory=list,
        description="A check submitted with `recheck`: the answers of its earlier upstream checks, "
        "oldest first (`result` is the answer of the latest, null until it answers). Empty "
        "otherwise.",
    )
    job_id: str | None = Field(
        default=None,
        description="The check job (`job_...`) whose item this check is; null for a check "
        "submitted or registered on its own.",
    )


class SubscriptionOut(BaseModel):
    """A webhook subscription, never with its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    event_types: list[EventType]
    description: str
    enabled: bool
    created_at: datetime
    max_rps: int | None = Field(
        description="At most this many requests in any sliding second, across every worker; "
        "null: no limit."
    )
    disabled_reason: DisabledReason | None = Field(
        description="Why it is disabled: `client` (its client disabled it), `gone` (the "
        "endpoint answered 410) or `failing` (every attempt failed for "
        "PHONEBRIDGE_WEBHOOK_DISABLE_AFTER_S); null while enabled."
    )
    include_job_items: bool = Field(
        default=True,
        description="false: the task events of check jobs' items are not sent to it.",
    )


class JobCountsOut(BaseModel):
    """A check job's counts: what it holds (fixed at creation) and how far it is."""

    items: int
    rejected: int
    duplicates: int
    cached: int
    to_submit: int = Field(description="items - rejected - duplicates - cached: its cost.")
    submitted: int
    pending: int
    completed: int
    failed: int
    expired: int
    by_verdict: dict[str, int] = Field(
        description="Result rows (duplicates and cached ones included) by their verdict."
    )


class JobOut(BaseModel):
    """A check job (service/features/check_jobs.py, `job_json`, builds it)."""

    id: str
    name: str | None
    state: JobState
    paused_reason: PausedReason | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    max_age_s: int
    counts: JobCountsOut = Field(
        description="While the job runs, a read may show the counts of an earlier read, made at "
        "most 10 s before (less for a small job) and never before the job's last change of state; "
        "a move's answer and `job.completed` show them as they are."
    )
    estimated_finish_at: datetime | None = Field(
        description="When its last item should have its final answer; null when not running."
    )


class EventOut(BaseModel):
    id: str
    type: EventType
    created_at: datetime
    data: TaskOut | JobOut | SubscriptionOut = Field(
        description="The task as it was when the event was created (`task.*`), the check job "
        "with its final counts (`job.completed`), or the subscription that phonebridge "
        "disabled (`subscription.disabled`)."
    )
