"""A job item's task names its job by the job's public id (`tasks.job_id`), so the task's JSON
(`"job_id"`) is rendered from the task row alone, as every write-back renders it
(`row_to_json(tasks)`, service/store/outbox.py), without a join on each of them.

And whether a job still has items to submit is one probe of a partial index
(ix_check_job_items_waiting), however large the job.

Expand only: a nullable column, written once when a job item's task is inserted, and an index.

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
    op.create_index(
        "ix_check_job_items_waiting",
        "check_job_items",
        ["job_pk", "line"],
        postgresql_where=sa.text("state = 'waiting'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_check_job_items_waiting",
        table_name="check_job_items",
        postgresql_where=sa.text("state = 'waiting'"),
    )
    op.drop_column("tasks", "job_id")
