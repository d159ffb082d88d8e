"""Webhook endpoints that stay healthy: a pace per subscription, its run of failures, the
`subscription.disabled` event, and the attempts' subscription for its health.

- subscriptions: `max_rps` (1-1000, NULL: no limit) and `pace_epoch` (moved on by each change of
  it); `disabled_at`; the run of failures (`last_success_at`, `failing_since`, `failures_in_row`,
  `schedule_exhausted`). `disabled_reason` becomes one of the contract's words: the old free
  text said "disabled by the client" for the client's own disable and quoted the 410 otherwise.
- deliveries: `turn_at`, the turn a delivery holds on its subscription's pace.
- delivery_attempts: `subscription_id`, indexed with `at`. Attempts of the last hour are filled
  in from their deliveries (a subscription's health looks back one hour); older ones stay NULL.
- events: an event is about a task or (`subscription.disabled`) a subscription; a client's
  events by `created_at` for `recover`, and the events about subscriptions for retention.

Revision ID: endpoint_health_0001
Revises: rechecks_0001
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "endpoint_health_0001"
down_revision: str | None = "rechecks_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TASK_EVENT_TYPES = "type IN ('task.completed', 'task.expired', 'task.failed')"
EVENT_TYPES = "type IN ('task.completed', 'task.expired', 'task.failed', 'subscription.disabled')"

SUBSCRIPTION_COLUMNS = (
    sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("max_rps", sa.Integer(), nullable=True),
    sa.Column("pace_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False),
    sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
    sa.Column("failures_in_row", sa.Integer(), server_default=sa.text("0"), nullable=False),
    sa.Column("schedule_exhausted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
)


def upgrade() -> None:
    for column in SUBSCRIPTION_COLUMNS:
        op.add_column("subscriptions", column)
    op.execute(
        """
        UPDATE subscriptions SET
            disabled_reason = CASE WHEN disabled_reason = 'disabled by the client' THEN 'client'
                                   ELSE 'gone' END,
            disabled_at = updated_at
        WHERE disabled_reason IS NOT NULL
        """
    )
    op.alter_column(
        "subscriptions",
        "disabled_reason",
        type_=sa.String(length=16),
        existing_type=sa.Text(),
        existing_nullable=True,
    )
    op.create_check_constraint(
        op.f("ck_subscriptions_max_rps"), "subscriptions", "max_rps BETWEEN 1 AND 1000"
    )
    op.create_check_constraint(
        op.f("ck_subscriptions_disabled_reason"),
        "subscriptions",
        "disabled_reason IN ('client', 'gone', 'failing')",
    )

    op.add_column("deliveries", sa.Column("turn_at", sa.DateTime(timezone=True), nullable=True))

    op.add_column("delivery_attempts", sa.Column("subscription_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_delivery_attempts_subscription_id_subscriptions"),
        "delivery_attempts",
        "subscriptions",
        ["subscription_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.execute(
        """
        UPDATE delivery_attempts a SET subscription_id = d.subscription_id
        FROM deliveries d
        WHERE d.id = a.delivery_id AND a.at > now() - interval '1 hour'
        """
    )
    op.create_index(
        "ix_delivery_attempts_subscription_id_at",
        "delivery_attempts",
        ["subscription_id", "at"],
        unique=False,
    )

    op.alter_column("events", "task_pk", existing_type=sa.BigInteger(), nullable=True)
    op.add_column("events", sa.Column("subscription_pk", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_events_subscription_pk_subscriptions"),
        "events",
        "subscriptions",
        ["subscription_pk"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_check_constraint(
        op.f("ck_events_subject"), "events", "(task_pk IS NULL) <> (subscription_pk IS NULL)"
    )
    op.drop_constraint(op.f("ck_events_type"), "events", type_="check")
    op.create_check_constraint(op.f("ck_events_type"), "events", EVENT_TYPES)
    op.create_index(
        "ix_events_client_id_created_at", "events", ["client_id", "created_at"], unique=False
    )
    op.create_index(
        "ix_events_subscription_created_at",
        "events",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("subscription_pk IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_events_subscription_created_at",
        table_name="events",
        postgresql_where=sa.text("subscription_pk IS NOT NULL"),
    )
    op.drop_index("ix_events_client_id_created_at", table_name="events")
    op.execute("DELETE FROM events WHERE subscription_pk IS NOT NULL")
    op.drop_constraint(op.f("ck_events_type"), "events", type_="check")
    op.create_check_constraint(op.f("ck_events_type"), "events", TASK_EVENT_TYPES)
    op.drop_constraint(op.f("ck_events_subject"), "events", type_="check")
    op.drop_constraint(
        op.f("fk_events_subscription_pk_subscriptions"), "events", type_="foreignkey"
    )
    op.drop_column("events", "subscription_pk")
    op.alter_column("events", "task_pk", existing_type=sa.BigInteger(), nullable=False)

    op.drop_index("ix_delivery_attempts_subscription_id_at", table_name="delivery_attempts")
    op.drop_constraint(
        op.f("fk_delivery_attempts_subscription_id_subscriptions"),
        "delivery_attempts",
        type_="foreignkey",
    )
    op.drop_column("delivery_attempts", "subscription_id")

    op.drop_column("deliveries", "turn_at")

    op.drop_constraint(op.f("ck_subscriptions_disabled_reason"), "subscriptions", type_="check")
    op.drop_constraint(op.f("ck_subscriptions_max_rps"), "subscriptions", type_="check")
    op.alter_column(
        "subscriptions",
        "disabled_reason",
        type_=sa.Text(),
        existing_type=sa.String(length=16),
        existing_nullable=True,
    )
    op.execute(
        """
        UPDATE subscriptions SET disabled_reason = CASE disabled_reason
            WHEN 'client' THEN 'disabled by the client'
            WHEN 'gone' THEN 'HTTP 410: the endpoint is gone; the subscription was disabled'
            ELSE 'every attempt failed for too long' END
        WHERE disabled_reason IS NOT NULL
        """
    )
    for column in reversed(SUBSCRIPTION_COLUMNS):
        op.drop_column("subscriptions", column.name)
