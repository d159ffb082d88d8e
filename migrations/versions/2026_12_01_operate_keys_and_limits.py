"""Operating for years: when each API key was last used, and per-client intake limits.

`api_keys.last_used_at` is written at most once a minute per key (not per request).
`clients.max_rps` / `clients.max_pending` override PHONEBRIDGE_CLIENT_MAX_RPS and
PHONEBRIDGE_CLIENT_MAX_PENDING for one client: NULL follows the setting, 0 means no limit.

Revision ID: operate_0001
Revises: 2026_12_01_portal
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "operate_0001"
down_revision: str | None = "2026_12_01_portal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("clients", sa.Column("max_rps", sa.Integer(), nullable=True))
    op.add_column("clients", sa.Column("max_pending", sa.Integer(), nullable=True))
    op.create_check_constraint("limits", "clients", "max_rps >= 0 AND max_pending >= 0")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_clients_limits"), "clients", type_="check")
    op.drop_column("clients", "max_pending")
    op.drop_column("clients", "max_rps")
    op.drop_column("api_keys", "last_used_at")
