"""The completion-time estimates (service/domain/completion.py) in PostgreSQL: read one, add a
batch's completions to several in one statement.

A row holds the weights as of its `updated_at`; readers decay them to their `now`. Adding is a
merge: under the row's lock each writer decays what is stored to its own `now` and adds its
increments, so concurrent batches all count, in any order, and a restart keeps everything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.completion import CompletionEstimate

# The whole account's row: what the schedule of every client's tasks uses.
ACCOUNT_WIDE = 0

_READ = text(
    """
    SELECT account, client_id, weights, updated_at FROM completion_estimates
    WHERE account = :account AND client_id = :client_id
    """
)

_READ_CLIENT = text(
    """
    SELECT account, client_id, weights, updated_at FROM completion_estimates
    WHERE client_id = :client_id ORDER BY account
    """
)

# Rows are written in key order, so two batches that touch the same rows lock them in the same
# order and cannot deadlock. A writer whose `now` is older than the row's (a concurrent batch
# committed first) adds without decaying: the difference is milliseconds.
_ADD = text(
    """
    INSERT INTO completion_estimates AS e (account, client_id, weights, updated_at)
    SELECT :account, v.client_id, v.weights, :now
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(client_id bigint, weights float8[])
    ORDER BY v.client_id
    ON CONFLICT (account, client_id) DO UPDATE SET
        weights = (
            SELECT array_agg(
                COALESCE(x.stored, 0) * power(
                    0.5,
                    GREATEST(EXTRACT(EPOCH FROM (CAST(:now AS timestamptz) - e.updated_at)), 0)
                    / :half_life_s
                ) + COALESCE(x.added, 0)
                ORDER BY x.position
            )
            FROM unnest(e.weights, EXCLUDED.weights) WITH ORDINALITY AS x(stored, added, position)
        ),
        updated_at = GREATEST(e.updated_at, EXCLUDED.updated_at)
    """
)


@dataclass(frozen=True)
class StoredEstimate:
    account: str
    client_id: int
    weights: tuple[float, ...]
    updated_at: datetime

    def as_of(self, now: datetime, half_life_s: float) -> CompletionEstimate:
        """The estimate decayed from `updated_at` to `now`."""
        elapsed_s = (now - self.updated_at).total_seconds()
        return CompletionEstimate.of(self.weights).decayed(elapsed_s, half_life_s)


async def load_estimate(
    session: AsyncSession, account: str, client_id: int = ACCOUNT_WIDE
) -> StoredEstimate | None:
    """The stored estimate of `account` (as a whole, or one client's share), or None."""
    result = await session.execute(_READ, {"account": account, "client_id": client_id})
    row = result.one_or_none()
    return None if row is None else _stored(row)


async def load_client_estimates(session: AsyncSession, client_id: int) -> list[StoredEstimate]:
    """Every account's estimate of one client's completions (ACCOUNT_WIDE: of all of them)."""
    result = await session.execute(_READ_CLIENT, {"client_id": client_id})
    return [_stored(row) for row in result]


async def client_estimate(
    session: AsyncSession, client_id: int, now: datetime, half_life_s: float
) -> tuple[CompletionEstimate, datetime | None]:
    """One client's completions as of `now`, merged over every account (in practice one), and
    when they last changed (None: never)."""
    stored = await load_client_estimates(session, client_id)
    return _merged(stored, now, half_life_s)


async def account_estimates(
    session: AsyncSession, now: datetime, half_life_s: float
) -> CompletionEstimate:
    """Every account's estimate as of `now`, merged: what the operator's metrics show."""
    stored = await load_client_estimates(session, ACCOUNT_WIDE)
    return _merged(stored, now, half_life_s)[0]


def _merged(
    stored: Sequence[StoredEstimate], now: datetime, half_life_s: float
) -> tuple[CompletionEstimate, datetime | None]:
    merged = CompletionEstimate.empty()
    for row in stored:
        merged = merged.merged(row.as_of(now, half_life_s))
    return merged, max((row.updated_at for row in stored), default=None)


async def add_to_estimates(
    session: AsyncSession,
    account: str,
    increments: Mapping[int, Sequence[float]],
    now: datetime,
    half_life_s: float,
) -> None:
    """Add each client's bin increments (keyed by client id, ACCOUNT_WIDE for the account) to the
    stored estimates, creating rows as needed; one statement."""
    if not increments:
        return
    rows = [
        {"client_id": client_id, "weights": list(weights)}
        for client_id, weights in sorted(increments.items())
    ]
    await session.execute(
        _ADD,
        {
            "account": account,
            "rows": orjson.dumps(rows).decode(),
            "now": now,
            "half_life_s": half_life_s,
        },
    )


def _stored(row: Row[Any]) -> StoredEstimate:
    return StoredEstimate(
        account=str(row.account),
        client_id=int(row.client_id),
        weights=tuple(float(w) for w in row.weights),
        updated_at=row.updated_at,
    )
