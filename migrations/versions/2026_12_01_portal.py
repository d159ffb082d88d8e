"""The portal: each task's bounded poll history, and the indexes behind the portal's pages.

- `tasks.poll_history`: the last POLL_HISTORY_LIMIT upstream answers of the task (JSON objects
  `{"at", "code", "status", "request_id", "latency_ms"}`), appended and trimmed by the engine's
  write-back in the same statement; purged with the task by retention.
- `ix_tasks_client_id_completed_at`: one client's finished tasks by completion time (the
  overview's charts of the last 24 hours).
- `ix_deliveries_client_id_state_finished_at`: one client's failed deliveries, newest first, and
  its delivery outcomes of the last 24 hours.

Revision ID: 2026_12_01_portal
Revises: 0001
Create Date: 2026-12-01 10:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "2026_12_01_portal"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column(
            "poll_history",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_tasks_client_id_completed_at",
        "tasks",
        ["client_id", "completed_at"],
        unique=False,
        postgresql_where=sa.text("state <> 'pending'"),
    )
    op.create_index(
        "ix_deliveries_client_id_state_finished_at",
        "deliveries",
        ["client_id", "state", "finished_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_client_id_state_finished_at", table_name="deliveries")
    op.drop_index(
        "ix_tasks_client_id_completed_at",
        table_name="tasks",
        postgresql_where=sa.text("state <> 'pending'"),
    )
    op.drop_column("tasks", "poll_history")
