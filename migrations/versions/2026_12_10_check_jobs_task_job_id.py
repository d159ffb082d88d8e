"""A job item's task names its job by the job's public id (`tasks.job_id`), so the task's JSON
(`"job_id"`) is rendered from the task row alone, as every write-back renders it
(`row_to_json(tasks)`, service/store/outbox.py), without a join on each of them.

Expand only: a nullable column, written once when a job item's task is inserted.

Revision ID: check_jobs_0002
Revises: traces_0001
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "check_jobs_0002"
down_revision: str | None = "traces_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("job_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column("tasks", "job_id")
