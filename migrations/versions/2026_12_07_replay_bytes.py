"""A check submission's answer kept as the text that was sent, so a replay is the same bytes.

`response_body` was JSONB, which re-orders keys and re-spaces the text it gives back: a replayed
`POST /v1/checks` answer held the same JSON as the first but not the same bytes. Rows already
stored keep JSONB's rendering of their answer (the first answer's bytes are not recoverable).

Revision ID: replay_bytes_0001
Revises: callback_tokens_0001
Create Date: 2026-12-07 02:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "replay_bytes_0001"
down_revision: str | None = "callback_tokens_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE check_submissions ALTER COLUMN response_body TYPE text "
        "USING response_body::text"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE check_submissions ALTER COLUMN response_body TYPE jsonb "
        "USING response_body::jsonb"
    )
