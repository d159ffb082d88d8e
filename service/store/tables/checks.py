"""Submitted checks: the intent row of each `POST /v1/checks`, and the submits phonebridge makes
later on a client's behalf (re-checks, check job items) with their numbers sealed."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.domain.checks import IDEMPOTENCY_KEY_MAX_LENGTH
from service.domain.states import ScheduledSubmitPurpose, ScheduledSubmitState, SubmissionState
from service.store.tables.base import Base, StateText, one_of


class CheckSubmission(Base):
    """One `POST /v1/checks`, written and committed before upstream is called, so a process that
    dies after upstream answered leaves a row that says the outcome is unknown. With an
    Idempotency-Key it also holds the answer to replay."""

    __tablename__ = "check_submissions"
    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key"),
        CheckConstraint(one_of("state", SubmissionState), name="state"),
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
        CheckConstraint(one_of("state", ScheduledSubmitState), name="state"),
        CheckConstraint(one_of("purpose", ScheduledSubmitPurpose), name="purpose"),
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
        # Submits claimed and not yet begun, which bound the next claims (a handed-back row's
        # lease is cleared, so only the few claimed rows are indexed, never the queue).
        Index(
            "ix_scheduled_submits_claimed_lease_until",
            "lease_until",
            postgresql_where=text(f"{_WAITING_SUBMIT} AND lease_until IS NOT NULL"),
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
