"""The lease pattern shared by polls and webhook deliveries: one statement claims due rows under a
fresh token (`FOR UPDATE SKIP LOCKED`, so concurrent claimers never take the same row), and every
later write is guarded by that token. A worker renews the leases it holds while it works on them
(`renew_leases`, driven by service/heartbeat.py), so a lease can be short: a crashed
worker's rows come due again within one lease."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.states import DeliveryState, ScheduledSubmitState, TaskState

# One tick claims at most this many batches: a huge backlog is spread over ticks rather than
# leased all at once (leases would run out in the broker's queue).
MAX_BATCHES_PER_TICK = 10
# A fair claim (service/store/poll_claims.py, service/store/scheduled_submits.py) reads at most
# this many times its limit of each client's due rows, and joins back only as many of the first
# turns.
CANDIDATES_PER_CLAIM = 4


async def claim_due(
    session: AsyncSession,
    claim: TextClause,
    now: datetime,
    lease_s: float,
    limit: int,
    extra: Mapping[str, object] | None = None,
) -> tuple[uuid.UUID, list[int]]:
    """Run a claim statement (parameters :token, :lease_until, :now, :limit and `extra`; it
    returns the ids it leased) and return the new lease token with the claimed ids in ascending
    order."""
    token = uuid.uuid4()
    if limit <= 0:
        return token, []
    result = await session.execute(
        claim,
        {
            "token": token,
            "lease_until": now + timedelta(seconds=lease_s),
            "now": now,
            "limit": limit,
            **(extra or {}),
        },
    )
    return token, sorted(int(row[0]) for row in result)


class LeasedTable(StrEnum):
    """The tables whose rows are claimed under a lease."""

    TASKS = "tasks"
    DELIVERIES = "deliveries"
    # A job item's submit while its call lasts (service/engine/job_items.py): renewed
    # `submitting`, never shortened below the lease its mark gave it.
    SCHEDULED_SUBMITS = "scheduled_submits"


# One statement renews every lease a worker holds in a table: rows found by primary key, each
# still under the token it was claimed with and still pending (a row written back, handed back
# or re-claimed by someone else is left alone). Only `lease_until` changes: in tasks and
# deliveries an unindexed column, so the update stays HOT and touches no index. The rows are
# locked in id order first, as the poll write-back locks them (service/store/poll_results.py):
# renewed in the join's order, a heartbeat and a write-back of two of the same rows deadlocked
# (bench/jobs.py, once in a run).
def _renewal(table: LeasedTable, held_state: str, until: str) -> TextClause:
    return text(
        f"""
        WITH held AS (
            SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:tokens AS uuid[])) AS h(id, token)
        ),
        locked AS (
            SELECT t.id FROM {table} AS t JOIN held ON t.id = held.id
            WHERE t.lease_token = held.token AND t.state = '{held_state}'
            ORDER BY t.id
            FOR UPDATE OF t
        )
        UPDATE {table} AS t SET lease_until = {until}
        FROM locked WHERE t.id = locked.id
        RETURNING t.lease_token
        """  # noqa: S608 - only enum values and constants are interpolated
    )


_RENEW = {
    LeasedTable.TASKS: _renewal(LeasedTable.TASKS, TaskState.PENDING, ":until"),
    LeasedTable.DELIVERIES: _renewal(LeasedTable.DELIVERIES, DeliveryState.PENDING, ":until"),
    # Never shortened below the lease its mark gave it.
    LeasedTable.SCHEDULED_SUBMITS: _renewal(
        LeasedTable.SCHEDULED_SUBMITS,
        ScheduledSubmitState.SUBMITTING,
        "GREATEST(t.lease_until, :until)",
    ),
}


async def renew_leases(
    session: AsyncSession,
    table: LeasedTable,
    held: Sequence[tuple[int, uuid.UUID]],
    until: datetime,
) -> set[uuid.UUID]:
    """Extend to `until` the leases of these (id, token) pairs that are still ours; returns the
    tokens that still hold at least one row."""
    if not held:
        return set()
    result = await session.execute(
        _RENEW[table],
        {
            "ids": [row_id for row_id, _ in held],
            "tokens": [token for _, token in held],
            "until": until,
        },
    )
    return {row[0] for row in result}
