"""Adaptive schedule: the completion-time estimates, each task's last PENDING answer and its
chance of an answer at the next poll, and the index of the fair claim.

Revision ID: adaptive_0001
Revises: operate_0001
Create Date: 2026-12-01 10:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "adaptive_0001"
down_revision: str | None = "operate_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "completion_estimates",
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("weights", postgresql.ARRAY(sa.Double()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "client_id", name=op.f("pk_completion_estimates")),
    )
    op.add_column("tasks", sa.Column("last_pending_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tasks", sa.Column("finish_p", sa.REAL(), nullable=True))
    op.create_index(
        "ix_tasks_client_id_next_poll_at",
        "tasks",
        ["client_id", "next_poll_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_tasks_client_id_next_poll_at",
        table_name="tasks",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_column("tasks", "finish_p")
    op.drop_column("tasks", "last_pending_at")
    op.drop_table("completion_estimates")
