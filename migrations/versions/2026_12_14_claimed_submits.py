"""The submits claimed and not yet begun, counted at each scheduler tick so that claims never run
ahead of the workers by more than about a second of the ceiling (service/domain/claims_ahead.py):
a partial index of the claimed waiting rows alone (a handed-back row's lease is cleared), so
the count reads a few hundred entries, however long the queue.

Revision ID: claimed_submits_0001
Revises: job_final_counts_0001
Create Date: 2026-12-14 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "claimed_submits_0001"
down_revision: str | None = "job_final_counts_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_scheduled_submits_claimed_lease_until",
        "scheduled_submits",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("state = 'waiting' AND lease_until IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_scheduled_submits_claimed_lease_until",
        table_name="scheduled_submits",
        postgresql_where=sa.text("state = 'waiting' AND lease_until IS NOT NULL"),
    )
