"""Callback tokens kept only as digests, rotatable with a grace period, and early hints capped.

A client's callback token is no longer stored: it is derived from the deployment's secret key,
the client id and `callback_generation` (service/checks/callback_hints.py), and only its SHA-256
is kept.
Rotating (`phonebridge api-key rotate-callback`) moves the current digest to
`previous_callback_token_hash`, still accepted until `previous_callback_valid_until`.

Existing clear tokens cannot be derived, so their digests become the previous ones, accepted for
24 hours (the default task validity: every check submitted with them has ended by then), and
each client's first callback URL after the upgrade is a derived one. Early hints get an index by
client and arrival, which the cap (oldest dropped) orders by.

Revision ID: callback_tokens_0001
Revises: callback_records_0001
Create Date: 2026-12-06 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "callback_tokens_0001"
down_revision: str | None = "callback_records_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "clients",
        sa.Column("callback_generation", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "clients",
        sa.Column("previous_callback_token_hash", sa.LargeBinary(length=32), nullable=True),
    )
    op.add_column(
        "clients",
        sa.Column("previous_callback_valid_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        op.f("ix_clients_previous_callback_token_hash"),
        "clients",
        ["previous_callback_token_hash"],
    )
    op.execute(
        """
        UPDATE clients
        SET previous_callback_token_hash = callback_token_hash,
            previous_callback_valid_until = now() + interval '24 hours',
            callback_token_hash = NULL,
            callback_generation = 1
        WHERE callback_token_hash IS NOT NULL
        """
    )
    op.drop_column("clients", "callback_token")
    op.create_index(
        "ix_early_hints_client_id_received_at", "early_hints", ["client_id", "received_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_early_hints_client_id_received_at", table_name="early_hints")
    # Derived tokens cannot be stored back: the older code makes each client a new one.
    op.add_column("clients", sa.Column("callback_token", sa.String(length=64), nullable=True))
    op.execute("UPDATE clients SET callback_token_hash = NULL")
    op.drop_index(op.f("ix_clients_previous_callback_token_hash"), table_name="clients")
    op.drop_column("clients", "previous_callback_valid_until")
    op.drop_column("clients", "previous_callback_token_hash")
    op.drop_column("clients", "callback_generation")
