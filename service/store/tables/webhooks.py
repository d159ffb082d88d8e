"""Webhook delivery's tables: the events (the outbox), the subscriptions, their deliveries and
every attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

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
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from service.domain.pacing import MAX_RPS_MAX, MAX_RPS_MIN
from service.domain.public_ids import PUBLIC_ID_MAX_LENGTH
from service.domain.states import DeliveryState, DisabledReason, EventType
from service.store.tables.base import Base, StateText, one_of

# The partial index's predicate; the queries that should use it spell it the same.
_PENDING_DELIVERY = f"state = '{DeliveryState.PENDING}'"


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
        CheckConstraint(one_of("type", EventType), name="type"),
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
        CheckConstraint(one_of("disabled_reason", DisabledReason), name="disabled_reason"),
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
        CheckConstraint(one_of("state", DeliveryState), name="state"),
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
