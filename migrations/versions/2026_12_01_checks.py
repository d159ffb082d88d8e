"""Submitting checks and upstream's callback as a hint: the task's source and masked number, the
hint throttle, the submission intents (idempotency) and the early hints.

Revision ID: 0012_checks
Revises: adaptive_0001
Create Date: 2026-12-01 10:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012_checks"
down_revision: str | None = "adaptive_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("callback_token", sa.String(length=64), nullable=True))
    op.add_column(
        "clients", sa.Column("callback_token_hash", sa.LargeBinary(length=32), nullable=True)
    )
    op.create_unique_constraint(
        op.f("uq_clients_callback_token_hash"), "clients", ["callback_token_hash"]
    )
    op.add_column(
        "tasks",
        sa.Column("source", sa.String(length=16), server_default="registered", nullable=False),
    )
    op.add_column("tasks", sa.Column("phone_number_masked", sa.String(length=24), nullable=True))
    op.add_column("tasks", sa.Column("last_hint_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        op.f("ck_tasks_source"), "tasks", "source IN ('registered', 'submitted')"
    )
    op.create_table(
        "check_submissions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("fingerprint", sa.LargeBinary(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("phone_number_masked", sa.String(length=24), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_status", sa.SmallInteger(), nullable=True),
        sa.Column("response_body", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("task_pk", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "state IN ('submitting', 'answered', 'unknown')",
            name=op.f("ck_check_submissions_state"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_check_submissions_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_pk"],
            ["tasks.id"],
            name=op.f("fk_check_submissions_task_pk_tasks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_submissions")),
        sa.UniqueConstraint(
            "client_id",
            "idempotency_key",
            name=op.f("uq_check_submissions_client_id_idempotency_key"),
        ),
    )
    op.create_index(
        "ix_check_submissions_created_at", "check_submissions", ["created_at"], unique=False
    )
    op.create_table(
        "early_hints",
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_early_hints_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", "task_id", name=op.f("pk_early_hints")),
    )
    op.create_index("ix_early_hints_expires_at", "early_hints", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_early_hints_expires_at", table_name="early_hints")
    op.drop_table("early_hints")
    op.drop_index("ix_check_submissions_created_at", table_name="check_submissions")
    op.drop_table("check_submissions")
    op.drop_constraint(op.f("ck_tasks_source"), "tasks", type_="check")
    op.drop_column("tasks", "last_hint_at")
    op.drop_column("tasks", "phone_number_masked")
    op.drop_column("tasks", "source")
    op.drop_constraint(op.f("uq_clients_callback_token_hash"), "clients", type_="unique")
    op.drop_column("clients", "callback_token_hash")
    op.drop_column("clients", "callback_token")
