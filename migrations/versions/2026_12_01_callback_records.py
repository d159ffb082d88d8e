"""Callback trust: which tasks expect upstream's callback, and what each client's callbacks did.

`tasks.expects_callback` marks checks submitted through phonebridge with a callback; their
completions are counted, per client, in `callback_records` (heard: a callback came; missed: none
did), which decides whether the client's checks are polled on the sparse safety net or on the
normal schedule (service/domain/callback_trust.py). Existing tasks expect nothing: the counting
starts with the next submitted check.

Revision ID: callback_records_0001
Revises: portal_test_attempts_0001
Create Date: 2026-12-01 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "callback_records_0001"
down_revision: str | None = "portal_test_attempts_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column(
            "expects_callback", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.create_table(
        "callback_records",
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("heard", sa.Double(), nullable=False),
        sa.Column("missed", sa.Double(), nullable=False),
        sa.Column("trusted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_callback_records_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_callback_records")),
    )


def downgrade() -> None:
    op.drop_table("callback_records")
    op.drop_column("tasks", "expects_callback")
