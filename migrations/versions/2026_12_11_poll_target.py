"""A client's own p95 detection-lag target for the adaptive poll schedule
(`phonebridge api-key limits --poll-target-p95-s`): NULL follows PHONEBRIDGE_POLL_TARGET_P95_S.

Revision ID: poll_target_0001
Revises: check_jobs_0002
Create Date: 2026-12-08 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "poll_target_0001"
down_revision: str | None = "check_jobs_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("poll_target_p95_s", sa.Double(), nullable=True))


def downgrade() -> None:
    op.drop_column("clients", "poll_target_p95_s")
