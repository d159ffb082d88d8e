"""Traces from intake to webhook (service/observability/traces.py): the W3C traceparent a task's
registration or submit left (`tasks.traceparent`), and the one of the poll that brought an
event's final state (`events.traceparent`). Written only while traces are on; NULL otherwise.

Additive and nullable only (expand): a worker or API of the release before writes and reads the
same rows as it did and leaves both columns NULL.

Revision ID: traces_0001
Revises: check_jobs_0001
Create Date: 2026-12-09 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "traces_0001"
down_revision: str | None = "check_jobs_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("tasks", "events")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_column(table, "traceparent")
