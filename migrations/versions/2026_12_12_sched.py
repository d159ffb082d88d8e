"""A client's callback record tells a loss rate from an outage (service/domain/callback_trust.py):
`lossy` is the loss share's verdict (what `trusted` held until now); `outage`, `streak`,
`streak_age_s` and `late_s` the fast rule that sees every callback lost from one moment on;
`trusted` becomes what readers rely on, neither lossy nor in an outage. And the fair claim's
first polls get their own partial index (a client's backlog due earlier must not hide them).

Revision ID: sched_0001
Revises: poll_target_0001
Create Date: 2026-12-12 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "sched_0001"
down_revision: str | None = "poll_target_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "callback_records",
        sa.Column("lossy", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "callback_records",
        sa.Column("outage", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "callback_records",
        sa.Column("streak", sa.Integer(), nullable=False, server_default="0"),
    )
    for name in ("streak_age_s", "late_s"):
        op.add_column(
            "callback_records",
            sa.Column(name, sa.Double(), nullable=False, server_default="0"),
        )
    op.execute("UPDATE callback_records SET lossy = NOT trusted")
    op.create_index(
        "ix_tasks_first_polls",
        "tasks",
        ["client_id", "next_poll_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending' AND finish_p IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_tasks_first_polls",
        table_name="tasks",
        postgresql_where=sa.text("state = 'pending' AND finish_p IS NULL"),
    )
    op.execute("UPDATE callback_records SET trusted = NOT lossy")
    op.drop_column("callback_records", "late_s")
    op.drop_column("callback_records", "streak_age_s")
    op.drop_column("callback_records", "streak")
    op.drop_column("callback_records", "outage")
    op.drop_column("callback_records", "lossy")
