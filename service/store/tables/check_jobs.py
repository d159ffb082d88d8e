"""Check jobs: a job, its accepted items (mask and digest, never the number) and its rejected
lines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.domain.checks import IDEMPOTENCY_KEY_MAX_LENGTH
from service.domain.public_ids import PUBLIC_ID_MAX_LENGTH
from service.domain.states import JobItemState, JobState, PausedReason
from service.store.tables.base import Base, StateText, one_of


class CheckJob(Base):
    """A client's list of numbers to check (service/domain/job_*.py; the contract's "Lists of
    numbers: check jobs"). The planned counts are fixed at creation; progress is counted from
    its items' tasks (`tasks.job_pk`)."""

    __tablename__ = "check_jobs"
    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key"),
        CheckConstraint(one_of("state", JobState), name="state"),
        CheckConstraint(one_of("paused_reason", PausedReason), name="paused_reason"),
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
    # The progress of the counts its `job.completed` event showed, kept when that event is
    # written if they can no longer change (service/domain/job_plan.py,
    # counts_fixed_once_finished): what a read shows without counting its items again. NULL:
    # not finished, counts that may still change, or finished before this column.
    final_counts: Mapped[dict[str, Any] | None]


class CheckJobItem(Base):
    """One accepted item of a check job, by its line. The number itself is never here: only its
    mask and keyed digest; until it is submitted, its scheduled submit (purpose `job_item`) keeps
    it sealed."""

    __tablename__ = "check_job_items"
    __table_args__ = (
        CheckConstraint(one_of("state", JobItemState), name="state"),
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
