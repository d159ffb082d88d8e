"""The schema: every table of the service, as typed SQLAlchemy 2.0 ORM classes.

Postgres is the single source of truth. The schedule lives in columns (`tasks.next_poll_at`,
`deliveries.next_attempt_at`) and claimed rows carry a lease (`lease_token`, `lease_until`) so
that a crashed worker's rows come due again and a late write-back changes nothing. The migrations in
migrations/versions must produce exactly this schema (a test compares them).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    REAL,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from service.domain.checks import IDEMPOTENCY_KEY_MAX_LENGTH
from service.domain.intake import TASK_ID_MAX_LENGTH
from service.domain.pacing import MAX_RPS_MAX, MAX_RPS_MIN
from service.domain.public_ids import PUBLIC_ID_MAX_LENGTH
from service.domain.states import (
    DeliveryState,
    DisabledReason,
    EventType,
    JobItemState,
    JobState,
    PausedReason,
    ScheduledSubmitPurpose,
    ScheduledSubmitState,
    SubmissionState,
    TaskSource,
    TaskState,
)

E = TypeVar("E", bound=StrEnum)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


# The partial indexes' predicate; the queries that should use those indexes spell it the same.
_PENDING_TASK = f"state = '{TaskState.PENDING}'"
_FINISHED_TASK = f"state <> '{TaskState.PENDING}'"
_COMPLETED_TASK = f"state = '{TaskState.COMPLETED}'"
_PENDING_DELIVERY = f"state = '{DeliveryState.PENDING}'"


class StateText(TypeDecorator[E]):
    """A state column: the enum's value as plain text in the database (the DDL stays a VARCHAR
    with its CHECK constraint), the `StrEnum` member in Python. An unknown value fails on the way
    in as on the way out."""

    impl = String
    cache_ok = True

    def __init__(self, states: type[E], length: int) -> None:
        super().__init__(length)
        self.states = states

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.states(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.states(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        uuid.UUID: UUID(as_uuid=True),
    }


class Client(Base):
    """A customer of phonebridge; owns API keys, tasks, subscriptions and events."""

    __tablename__ = "clients"
    __table_args__ = (
        CheckConstraint("max_rps >= 0 AND max_pending >= 0", name="limits"),
        CheckConstraint("max_checks_per_day >= 0", name="max_checks_per_day"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Intake limits of this client alone: NULL follows PHONEBRIDGE_CLIENT_MAX_RPS /
    # PHONEBRIDGE_CLIENT_MAX_PENDING, 0 means no limit.
    max_rps: Mapped[int | None] = mapped_column(Integer)
    max_pending: Mapped[int | None] = mapped_column(Integer)
    # Upstream checks this client may cause per UTC day: NULL follows
    # PHONEBRIDGE_CLIENT_MAX_CHECKS_PER_DAY, 0 means no limit (ClientCheckDay counts them).
    max_checks_per_day: Mapped[int | None] = mapped_column(Integer)
    # This client's p95 detection-lag target for the adaptive schedule (service/domain/schedule.py);
    # NULL follows PHONEBRIDGE_POLL_TARGET_P95_S.
    poll_target_p95_s: Mapped[float | None] = mapped_column(Double)
    # The client's upstream callback URL (/hooks/accuauth/<token>): the token is derived from the
    # deployment's secret key, the client id and the generation (checks/callback_hints.py), and
    # only its SHA-256 is kept, set on first use. Hints look the client up by that digest, so the
    # lookup's timing says nothing about the token. After a rotation the previous digest is
    # still accepted until previous_callback_valid_until.
    callback_generation: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    callback_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    previous_callback_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    previous_callback_valid_until: Mapped[datetime | None]


class ApiKey(Base):
    """An API key; only the SHA-256 of the key is stored, looked up by that digest."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # The first characters of the key, shown to operators to tell keys apart; not a secret.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]
    # Written at most once a minute per key by the API (service/api/auth.py), not per request.
    last_used_at: Mapped[datetime | None]


class Task(Base):
    """One upstream task_id registered by one client, with its polling schedule and outcome."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("client_id", "task_id"),
        CheckConstraint(_in("state", TaskState), name="state"),
        CheckConstraint(_in("source", TaskSource), name="source"),
        # The scheduler's hot path: due pending tasks, oldest due first.
        Index(
            "ix_tasks_due",
            "next_poll_at",
            postgresql_where=text(_PENDING_TASK),
        ),
        # The fair claim: each client's due pending tasks, oldest due first.
        Index(
            "ix_tasks_client_id_next_poll_at",
            "client_id",
            "next_poll_at",
            postgresql_where=text(_PENDING_TASK),
        ),
        # The fair claim's first polls (never polled), which a backlog due earlier must not hide.
        Index(
            "ix_tasks_first_polls",
            "client_id",
            "next_poll_at",
            postgresql_where=text(f"{_PENDING_TASK} AND finish_p IS NULL"),
        ),
        # The deadline sweep: pending tasks by deadline.
        Index(
            "ix_tasks_pending_expires_at",
            "expires_at",
            postgresql_where=text(_PENDING_TASK),
        ),
        # Listing newest first (scanned backwards), optionally by state; keyset pagination on id.
        Index("ix_tasks_client_id_id", "client_id", "id"),
        Index("ix_tasks_client_id_state_id", "client_id", "state", "id"),
        # Retention: finished tasks by completion time.
        Index(
            "ix_tasks_finished_completed_at",
            "completed_at",
            postgresql_where=text(_FINISHED_TASK),
        ),
        # The portal's charts: one client's tasks finished in the last hours.
        Index(
            "ix_tasks_client_id_completed_at",
            "client_id",
            "completed_at",
            postgresql_where=text(_FINISHED_TASK),
        ),
        # A check job's progress: its items' tasks by state.
        Index(
            "ix_tasks_job_pk_state", "job_pk", "state", postgresql_where=text("job_pk IS NOT NULL")
        ),
        # `max_age_s`: this client's completed checks of a number (by its keyed digest), newest
        # answer last.
        Index(
            "ix_tasks_client_id_number_digest_completed_at",
            "client_id",
            "number_digest",
            "completed_at",
            postgresql_where=text(f"number_digest IS NOT NULL AND {_COMPLETED_TASK}"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(TASK_ID_MAX_LENGTH))
    state: Mapped[TaskState] = mapped_column(
        StateText(TaskState, 16), server_default=TaskState.PENDING.value
    )
    result: Mapped[dict[str, Any] | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", server_default=text("'{}'::jsonb")
    )
    submitted_at: Mapped[datetime]
    registered_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    next_poll_at: Mapped[datetime | None]
    poll_count: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[dict[str, Any] | None]
    upstream_request_id: Mapped[str | None] = mapped_column(String(128))
    lease_token: Mapped[uuid.UUID | None]
    lease_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # The last POLL_HISTORY_LIMIT upstream calls (service/store/history.py), oldest first, for
    # the portal's timeline; trimmed by the write-back that appends to it, so it stays bounded.
    poll_history: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    # The latest PENDING answer: a completion's answer arrived after it (the estimate's input).
    last_pending_at: Mapped[datetime | None]
    # The estimated chance that the answer is there at next_poll_at: the order in which the
    # claim serves one client's due tasks (service/domain/schedule.py).
    finish_p: Mapped[float | None] = mapped_column(REAL)
    source: Mapped[TaskSource] = mapped_column(
        StateText(TaskSource, 16), server_default=TaskSource.REGISTERED.value
    )
    # A submitted check's number as the contract shows it (country code and last four digits).
    phone_number_masked: Mapped[str | None] = mapped_column(String(24))
    # The last upstream callback that made this task due: hints move a task at most once per
    # PHONEBRIDGE_HINT_MIN_INTERVAL_S.
    last_hint_at: Mapped[datetime | None]
    # A check submitted through phonebridge with a callback: its completion counts for or
    # against the client's callbacks (CallbackRecordRow), and it may be polled on the safety net.
    expects_callback: Mapped[bool] = mapped_column(server_default=text("false"))
    # Re-checks (service/domain/rechecks.py): the client's `recheck` (NULL: none) and the answers
    # of the earlier upstream checks, shown as `rechecks`. While a re-check is being polled,
    # `upstream_task_id` is its upstream task (NULL: `task_id` itself), `upstream_submitted_at`
    # when it was submitted (the poll schedule's age counts from it; NULL: `submitted_at`) and
    # `earlier_polls` the polls of the checks before it. `answered_at`: when `result` came, while
    # the task waits for its re-check (the time in its `rechecks` entry).
    recheck: Mapped[dict[str, Any] | None]
    rechecks: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    upstream_task_id: Mapped[str | None] = mapped_column(String(TASK_ID_MAX_LENGTH))
    upstream_submitted_at: Mapped[datetime | None]
    earlier_polls: Mapped[int] = mapped_column(Integer, server_default="0")
    answered_at: Mapped[datetime | None]
    # A check job's item (service/store/check_jobs.py): the job it belongs to (NULL: none).
    job_pk: Mapped[int | None] = mapped_column(ForeignKey("check_jobs.id", ondelete="SET NULL"))
    # A submitted check's number as its keyed digest (service/domain/phone_numbers.py,
    # `number_digest`), never the number: how `max_age_s` finds this client's earlier answer.
    number_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    # The W3C traceparent of the request that registered or submitted it, when traces are on
    # (service/observability/traces.py): its polls are spans of that trace.
    traceparent: Mapped[str | None] = mapped_column(Text)
    # The job's public id (`check_jobs.public_id`), shown as the task's `job_id`.
    job_id: Mapped[str | None] = mapped_column(String(PUBLIC_ID_MAX_LENGTH))


class CallbackRecordRow(Base):
    """Whether a client's upstream callbacks arrive (service/domain/callback_trust.py): the decayed
    counts of callback-carrying checks completed with and without their callback, as of
    `updated_at`; the loss share's verdict (`lossy`), an outage and its streak; and whether they
    are trusted (neither lossy nor in an outage: what the poll and submit statements read). No
    row: trusted, nothing seen yet."""

    __tablename__ = "callback_records"

    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    heard: Mapped[float] = mapped_column(Double)
    missed: Mapped[float] = mapped_column(Double)
    trusted: Mapped[bool]
    lossy: Mapped[bool] = mapped_column(server_default=text("false"))
    outage: Mapped[bool] = mapped_column(server_default=text("false"))
    streak: Mapped[int] = mapped_column(Integer, server_default="0")
    streak_age_s: Mapped[float] = mapped_column(Double, server_default="0")
    late_s: Mapped[float] = mapped_column(Double, server_default="0")
    updated_at: Mapped[datetime]


class CompletionEstimateRow(Base):
    """What polling has learnt of when upstream's answers arrive (service/domain/completion.py):
    the decayed histogram of completion times per upstream account, as of `updated_at`; one row
    for the account as a whole (`client_id` 0, what the schedule uses) and one per client (what
    the client's stats show)."""

    __tablename__ = "completion_estimates"

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    weights: Mapped[list[float]] = mapped_column(ARRAY(Double))
    updated_at: Mapped[datetime]


class CheckSubmission(Base):
    """One `POST /v1/checks`, written and committed before upstream is called, so a process that
    dies after upstream answered leaves a row that says the outcome is unknown. With an
    Idempotency-Key it also holds the answer to replay."""

    __tablename__ = "check_submissions"
    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key"),
        CheckConstraint(_in("state", SubmissionState), name="state"),
        Index("ix_check_submissions_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str | None] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LENGTH))
    # SHA-256 of the request (number and metadata): a different body under the same key is 422.
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    state: Mapped[SubmissionState] = mapped_column(StateText(SubmissionState, 16))
    phone_number_masked: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime]
    # Until then the request that wrote the row may still be waiting for upstream.
    lease_until: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    # The answer's JSON as sent (not JSONB, which re-orders and re-spaces it): a replay of the
    # same Idempotency-Key answers the same bytes.
    response_body: Mapped[str | None] = mapped_column(Text)
    task_pk: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"))


# The states in which a scheduled submit can still be made: the only ones that keep the number.
_SUBMIT_AHEAD = "state IN ({})".format(
    ", ".join(
        f"'{state}'"
        for state in (
            ScheduledSubmitState.STANDBY,
            ScheduledSubmitState.WAITING,
            ScheduledSubmitState.SUBMITTING,
        )
    )
)
_WAITING_SUBMIT = f"state = '{ScheduledSubmitState.WAITING}'"
_SUBMITTING = f"state = '{ScheduledSubmitState.SUBMITTING}'"


class ScheduledSubmit(Base):
    """A number to submit upstream later: a durable intent (service/store/scheduled_submits.py).

    The full number is kept sealed (AES-GCM, service/sealed_numbers.py) and only while a submit
    can still be made: the `numbers_only_while_needed` constraint makes that a database fact, not
    a hope. A row is marked `submitting` and committed before its call; one still `submitting`
    once its lease has passed is never submitted again. A re-check's row belongs to its task
    (one per task, from the check's submission until its last possible re-check); check jobs'
    items will be rows of another purpose.
    """

    __tablename__ = "scheduled_submits"
    __table_args__ = (
        UniqueConstraint("task_pk"),
        CheckConstraint(_in("state", ScheduledSubmitState), name="state"),
        CheckConstraint(_in("purpose", ScheduledSubmitPurpose), name="purpose"),
        CheckConstraint(
            f"(phone_number_sealed IS NOT NULL) = ({_SUBMIT_AHEAD})",
            name="numbers_only_while_needed",
        ),
        CheckConstraint(f"NOT ({_WAITING_SUBMIT}) OR due_at IS NOT NULL", name="waiting_is_due"),
        # The fair claim: each client's waiting submits, soonest due first.
        Index(
            "ix_scheduled_submits_client_id_due_at",
            "client_id",
            "due_at",
            postgresql_where=text(_WAITING_SUBMIT),
        ),
        # Submits whose worker died: their lease ends and their outcome is unknown.
        Index(
            "ix_scheduled_submits_submitting_lease_until",
            "lease_until",
            postgresql_where=text(_SUBMITTING),
        ),
        # A check job's item has one row; start, pause, resume and cancel move a job's rows.
        UniqueConstraint("job_pk", "job_line"),
        CheckConstraint(
            f"(purpose = '{ScheduledSubmitPurpose.JOB_ITEM}') = "
            "(job_pk IS NOT NULL AND job_line IS NOT NULL)",
            name="job_item_names_its_item",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    task_pk: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    purpose: Mapped[ScheduledSubmitPurpose] = mapped_column(StateText(ScheduledSubmitPurpose, 16))
    state: Mapped[ScheduledSubmitState] = mapped_column(StateText(ScheduledSubmitState, 16))
    phone_number_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    due_at: Mapped[datetime | None]
    lease_token: Mapped[uuid.UUID | None]
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # A check job's item (purpose `job_item`): its job and line (CheckJobItem); NULL otherwise.
    job_pk: Mapped[int | None] = mapped_column(ForeignKey("check_jobs.id", ondelete="CASCADE"))
    job_line: Mapped[int | None] = mapped_column(Integer)


class EarlyHint(Base):
    """An upstream callback for a task_id the client has not registered (yet): the first poll
    after registration comes at once. Kept for the task's validity."""

    __tablename__ = "early_hints"
    __table_args__ = (
        Index("ix_early_hints_expires_at", "expires_at"),
        # The per-client cap drops a client's oldest first (service/store/callback_hints.py).
        Index("ix_early_hints_client_id_received_at", "client_id", "received_at"),
    )

    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    task_id: Mapped[str] = mapped_column(String(TASK_ID_MAX_LENGTH), primary_key=True)
    received_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class Event(Base):
    """A task's final state, written in the same transaction as the state (the outbox), or a
    subscription that phonebridge disabled, written with the disable: each event is about exactly
    one of the two (`task_pk` or `subscription_pk`).

    `tx_id` is the writing transaction's id: the event feed only shows rows whose transaction is
    older than every transaction still running, so a page never skips an event that commits late.
    """

    __tablename__ = "events"
    __table_args__ = (
        # One event per final state of a task: a database fact, not a hope.
        UniqueConstraint("task_pk", "type"),
        CheckConstraint(_in("type", EventType), name="type"),
        # One job.completed per job.
        UniqueConstraint("job_pk", "type"),
        CheckConstraint("num_nonnulls(task_pk, subscription_pk, job_pk) = 1", name="subject"),
        Index("ix_events_client_id_tx_id_id", "client_id", "tx_id", "id"),
        # `recover` finds the events of a window that a subscription was never sent.
        Index("ix_events_client_id_created_at", "client_id", "created_at"),
        # Retention finds the old events about subscriptions (tasks' events go with their task).
        Index(
            "ix_events_subscription_created_at",
            "created_at",
            postgresql_where=text("subscription_pk IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(PUBLIC_ID_MAX_LENGTH), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    task_pk: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    subscription_pk: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE")
    )
    job_pk: Mapped[int | None] = mapped_column(ForeignKey("check_jobs.id", ondelete="CASCADE"))
    type: Mapped[EventType] = mapped_column(StateText(EventType, 32))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    tx_id: Mapped[int] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id()::text)::bigint")
    )
    # The traceparent of the poll that brought the final state, when traces are on: its webhook
    # attempts are spans of the task's trace under that poll.
    traceparent: Mapped[str | None] = mapped_column(Text)


class Subscription(Base):
    """A client's webhook endpoint. Secrets are stored encrypted; a rotated-out secret keeps
    signing until `previous_secret_expires_at`. Its run of failures (service/domain/
    endpoint_health.py) is kept here, moved on by every write-back of its attempts."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_client_id_id", "client_id", "id"),
        CheckConstraint(f"max_rps BETWEEN {MAX_RPS_MIN} AND {MAX_RPS_MAX}", name="max_rps"),
        CheckConstraint(_in("disabled_reason", DisabledReason), name="disabled_reason"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(PUBLIC_ID_MAX_LENGTH), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[EventType]] = mapped_column(ARRAY(StateText(EventType, 32)))
    description: Mapped[str] = mapped_column(Text, server_default="")
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    disabled_reason: Mapped[DisabledReason | None] = mapped_column(StateText(DisabledReason, 16))
    disabled_at: Mapped[datetime | None]
    # Requests per sliding second (service/domain/pacing.py); NULL: no limit. Each change of it
    # moves `pace_epoch` on, which names a fresh timeline of turns (service/webhooks/pacing.py).
    max_rps: Mapped[int | None] = mapped_column(Integer)
    pace_epoch: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # false: the task events of check jobs' items are not sent to it (job.completed still is).
    include_job_items: Mapped[bool] = mapped_column(server_default=text("true"))
    last_success_at: Mapped[datetime | None]
    failing_since: Mapped[datetime | None]
    failures_in_row: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    schedule_exhausted: Mapped[bool] = mapped_column(server_default=text("false"))
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Deleted subscriptions are kept (their deliveries' history stays readable) but never used.
    deleted_at: Mapped[datetime | None]
    # The last test event sent from the portal (a test is not an event, so it has no delivery
    # row and no attempt log of its own); overwritten by the next test.
    last_test_at: Mapped[datetime | None]
    last_test_webhook_id: Mapped[str | None] = mapped_column(String(64))
    last_test_status: Mapped[int | None]
    last_test_latency_ms: Mapped[int | None]
    last_test_error: Mapped[str | None] = mapped_column(Text)


class Delivery(Base):
    """One event to one subscription: its retry schedule, lease and latest outcome."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id"),
        CheckConstraint(_in("state", DeliveryState), name="state"),
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where=text(_PENDING_DELIVERY),
        ),
        Index("ix_deliveries_subscription_id_finished_at", "subscription_id", "finished_at"),
        # The portal: one client's failed deliveries newest first, and its recent outcomes.
        Index("ix_deliveries_client_id_state_finished_at", "client_id", "state", "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(PUBLIC_ID_MAX_LENGTH), unique=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    state: Mapped[DeliveryState] = mapped_column(
        StateText(DeliveryState, 16), server_default=DeliveryState.PENDING.value
    )
    attempt_count: Mapped[int] = mapped_column(Integer, server_default="0")
    # Attempts made since the schedule last restarted (a redeliver starts a fresh schedule).
    schedule_attempt: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_response_status: Mapped[int | None] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_token: Mapped[uuid.UUID | None]
    lease_until: Mapped[datetime | None]
    # The turn it holds on its subscription's pace (service/domain/pacing.py), while it waits in
    # its row for a turn further off than a worker holds a delivery; due a little before it.
    turn_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]


class DeliveryAttempt(Base):
    """The log of every webhook attempt, with a capped excerpt of the receiver's answer. Each
    names its subscription too, so a subscription's last hour of attempts (its health) is one
    range of an index."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_subscription_id_at", "subscription_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    # NULL for attempts made before the column was added (2026-12-08).
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE")
    )
    at: Mapped[datetime]
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class CheckJob(Base):
    """A client's list of numbers to check (service/domain/job_*.py; the contract's "Lists of
    numbers: check jobs"). The planned counts are fixed at creation; progress is counted from
    its items' tasks (`tasks.job_pk`)."""

    __tablename__ = "check_jobs"
    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key"),
        CheckConstraint(_in("state", JobState), name="state"),
        CheckConstraint(_in("paused_reason", PausedReason), name="paused_reason"),
        CheckConstraint(
            f"(state = '{JobState.PAUSED}') = (paused_reason IS NOT NULL)", name="paused_has_reason"
        ),
        CheckConstraint(
            "items >= 0 AND rejected >= 0 AND duplicates >= 0 AND cached >= 0 "
            "AND items - rejected - duplicates - cached >= 0",
            name="counts",
        ),
        # Listing newest first, optionally by state; keyset pagination on id.
        Index("ix_check_jobs_client_id_id", "client_id", "id"),
        Index("ix_check_jobs_client_id_state_id", "client_id", "state", "id"),
        # The engine's look at the jobs that may move (queued, running, paused).
        Index(
            "ix_check_jobs_active_state",
            "state",
            postgresql_where=text(
                f"state IN ('{JobState.QUEUED}', '{JobState.RUNNING}', '{JobState.PAUSED}')"
            ),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(PUBLIC_ID_MAX_LENGTH), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[JobState] = mapped_column(StateText(JobState, 16))
    paused_reason: Mapped[PausedReason | None] = mapped_column(StateText(PausedReason, 16))
    max_age_s: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The items' `recheck` policy (service/domain/rechecks.py); NULL: none.
    recheck: Mapped[dict[str, Any] | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LENGTH))
    # SHA-256 of the request: the same Idempotency-Key with another body is 422.
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    items: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    cached: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class CheckJobItem(Base):
    """One accepted item of a check job, by its line. The number itself is never here: only its
    mask and keyed digest; until it is submitted, its scheduled submit (purpose `job_item`) keeps
    it sealed."""

    __tablename__ = "check_job_items"
    __table_args__ = (
        CheckConstraint(_in("state", JobItemState), name="state"),
        # Whether a job still has items to submit (the engine's completion check, its counts):
        # one probe, however far its waiting items lie in a 100,000-item job.
        Index(
            "ix_check_job_items_waiting",
            "job_pk",
            "line",
            postgresql_where=text(f"state = '{JobItemState.WAITING}'"),
        ),
    )

    job_pk: Mapped[int] = mapped_column(
        ForeignKey("check_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[JobItemState] = mapped_column(StateText(JobItemState, 16))
    reference: Mapped[str | None] = mapped_column(String(255))
    # A JSON item's `metadata`, given to its task (NULL: none).
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    phone_number_masked: Mapped[str] = mapped_column(String(24))
    number_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    # A duplicate: the line of the first item with its number, whose answer it shows.
    first_line: Mapped[int | None] = mapped_column(Integer)
    # The task that answers it: its own once submitted, or the earlier check it was cached from.
    task_pk: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"))


class CheckJobRejection(Base):
    """An item of a check job that cannot be checked, by its line, with the reason."""

    __tablename__ = "check_job_rejections"

    job_pk: Mapped[int] = mapped_column(
        ForeignKey("check_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text)


class ClientCheckDay(Base):
    """The upstream checks one client caused on one UTC day (single checks, job items,
    re-checks), counted when each submit is written, before its call: the budget's ledger."""

    __tablename__ = "client_check_days"

    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    checks: Mapped[int] = mapped_column(Integer, server_default=text("0"))
