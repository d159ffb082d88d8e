"""Polling's tables: the registered tasks with their schedule and outcome, what each client's
callbacks did, the learnt completion times, and callbacks that came before their task."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    REAL,
    BigInteger,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.domain.intake import TASK_ID_MAX_LENGTH
from service.domain.public_ids import PUBLIC_ID_MAX_LENGTH
from service.domain.states import TaskSource, TaskState
from service.store.tables.base import Base, StateText, one_of

# The partial indexes' predicate; the queries that should use those indexes spell it the same.
_PENDING_TASK = f"state = '{TaskState.PENDING}'"
_FINISHED_TASK = f"state <> '{TaskState.PENDING}'"
_COMPLETED_TASK = f"state = '{TaskState.COMPLETED}'"


class Task(Base):
    """One upstream task_id registered by one client, with its polling schedule and outcome."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("client_id", "task_id"),
        CheckConstraint(one_of("state", TaskState), name="state"),
        CheckConstraint(one_of("source", TaskSource), name="source"),
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
