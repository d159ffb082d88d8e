"""A finished check job keeps the counts its `job.completed` event showed (`final_counts`), so
that reading it, alone or in a list, no longer counts its items again: about 60 ms a read at
20,000 items and 230 ms at 100,000, growing with the job (bench/jobs.py part v).

Revision ID: job_final_counts_0001
Revises: sched_0001
Create Date: 2026-12-13 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "job_final_counts_0001"
down_revision: str | None = "sched_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "check_jobs",
        sa.Column("final_counts", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("check_jobs", "final_counts")
