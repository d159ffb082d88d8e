"""The portal's test events: the last test attempt of each subscription, on its row.

A test event is not an event (the feed holds real final states only), and the attempt log hangs
off deliveries, which hang off events; so the last test attempt is kept on the subscription
itself, overwritten by the next test: when it was sent, its webhook-id, the HTTP status (null
when no answer came), the latency and the error.

Revision ID: portal_test_attempts_0001
Revises: 0012_checks
Create Date: 2026-12-01 11:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "portal_test_attempts_0001"
down_revision: str | None = "0012_checks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("last_test_at", sa.DateTime(timezone=True)),
    ("last_test_webhook_id", sa.String(length=64)),
    ("last_test_status", sa.Integer()),
    ("last_test_latency_ms", sa.Integer()),
    ("last_test_error", sa.Text()),
)


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("subscriptions", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("subscriptions", name)
