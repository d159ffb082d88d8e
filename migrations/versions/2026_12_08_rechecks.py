"""Re-checks: a task's `recheck` policy, the answers of its earlier upstream checks, the upstream
task it polls now, and the durable queue of numbers to submit later (`scheduled_submits`), whose
sealed numbers a constraint keeps only while a submit can still be made.

Revision ID: rechecks_0001
Revises: replay_bytes_0001
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "rechecks_0001"
down_revision: str | None = "replay_bytes_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUBMIT_AHEAD = "state IN ('standby', 'waiting', 'submitting')"


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("recheck", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column(
        "tasks",
        sa.Column(
            "rechecks",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("tasks", sa.Column("upstream_task_id", sa.String(length=128), nullable=True))
    op.add_column(
        "tasks", sa.Column("upstream_submitted_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "tasks", sa.Column("earlier_polls", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("tasks", sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "scheduled_submits",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("task_pk", sa.BigInteger(), nullable=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("phone_number_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.UUID(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('standby', 'waiting', 'submitting', 'done', 'unknown')",
            name=op.f("ck_scheduled_submits_state"),
        ),
        sa.CheckConstraint("purpose IN ('recheck')", name=op.f("ck_scheduled_submits_purpose")),
        sa.CheckConstraint(
            f"(phone_number_sealed IS NOT NULL) = ({_SUBMIT_AHEAD})",
            name=op.f("ck_scheduled_submits_numbers_only_while_needed"),
        ),
        sa.CheckConstraint(
            "NOT (state = 'waiting') OR due_at IS NOT NULL",
            name=op.f("ck_scheduled_submits_waiting_is_due"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_scheduled_submits_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_pk"],
            ["tasks.id"],
            name=op.f("fk_scheduled_submits_task_pk_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_submits")),
        sa.UniqueConstraint("task_pk", name=op.f("uq_scheduled_submits_task_pk")),
    )
    op.create_index(
        "ix_scheduled_submits_client_id_due_at",
        "scheduled_submits",
        ["client_id", "due_at"],
        unique=False,
        postgresql_where=sa.text("state = 'waiting'"),
    )
    op.create_index(
        "ix_scheduled_submits_submitting_lease_until",
        "scheduled_submits",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("state = 'submitting'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_scheduled_submits_submitting_lease_until",
        table_name="scheduled_submits",
        postgresql_where=sa.text("state = 'submitting'"),
    )
    op.drop_index(
        "ix_scheduled_submits_client_id_due_at",
        table_name="scheduled_submits",
        postgresql_where=sa.text("state = 'waiting'"),
    )
    op.drop_table("scheduled_submits")
    for column in (
        "answered_at",
        "earlier_polls",
        "upstream_submitted_at",
        "upstream_task_id",
        "rechecks",
        "recheck",
    ):
        op.drop_column("tasks", column)
