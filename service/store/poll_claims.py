"""The claim of the polling engine: due pending tasks leased for one round, shared fairly across
clients, each client's candidates ordered by first-poll wait and chance of an answer.

Time is always a parameter (`now`), never `now()` hidden in SQL. A claim sets a lease
(`lease_token`, `lease_until`); every later write is guarded by `lease_token = :token AND
state = 'pending'` (service/store/leased_tasks.py, service/store/poll_results.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.completion import EDGES
from service.domain.schedule import FIRST_POLL_MAX_WAIT_S
from service.domain.states import TaskState
from service.store.estimates import ACCOUNT_WIDE
from service.store.leases import CANDIDATES_PER_CLAIM, claim_due

# `state = 'pending'` is written out, not a parameter, here as in the deadline sweep
# (service/store/deadline_sweep.py): only then can the planner use the partial indexes
# (ix_tasks_client_id_next_poll_at, ix_tasks_first_polls).
#
# The claim shares the round fairly when more is due than the rate ceiling allows: clients with
# due work take turns (every client's first task, then every client's second, ...), so one
# client's backlog cannot delay another's answers. Within a client, among its most overdue tasks
# (at most CANDIDATES_PER_CLAIM x :limit, read from the index in next_poll_at order) and its
# first polls overdue by more than FIRST_POLL_MAX_WAIT_S (their own partial index: a backlog due
# earlier cannot hide them), the order is:
#
# 1. first polls (never polled: finish_p NULL) overdue by more than FIRST_POLL_MAX_WAIT_S, the
#    oldest first: the contract's first poll within about a second is never traded away;
# 2. then by the chance of finding the answer, highest first: a re-poll's `finish_p` (the
#    estimate's, written by its last poll), a first poll's the account estimate's share of answers
#    in the bins wholly below its age (a step CDF, never above the true one), so a re-poll likelier
#    to find its answer may go before a first poll that has waited less than the bound; without
#    an estimate a first poll counts as certain (it goes first, as before any is learnt).
#
# The work is bounded by those windows times the number of clients with due work, whatever the
# number of pending tasks (bench/scale.py). Rows are locked in turn order with SKIP LOCKED, and
# the limit counts only rows locked, so a concurrent claimer takes the next turns; the lease
# condition is checked again under the lock.
_CLAIM_DUE = text(
    f"""
    WITH estimate AS (
        SELECT array_agg(bins.below ORDER BY bins.i) AS cdf FROM (
            SELECT u.i, sum(u.w) OVER (ORDER BY u.i) / NULLIF(sum(u.w) OVER (), 0) AS below
            FROM completion_estimates AS e, unnest(e.weights) WITH ORDINALITY AS u(w, i)
            WHERE e.account = :account AND e.client_id = {ACCOUNT_WIDE}
        ) AS bins
    ),
    candidates AS (
        SELECT DISTINCT ON (due.id) due.*
        FROM clients AS c
        CROSS JOIN LATERAL (
            (SELECT t.id, t.client_id, t.finish_p, t.next_poll_at,
                    COALESCE(t.upstream_submitted_at, t.submitted_at) AS submitted_at
             FROM tasks AS t
             WHERE t.client_id = c.id AND t.state = '{TaskState.PENDING}'
               AND t.next_poll_at <= :now AND t.expires_at > :now
               AND (t.lease_until IS NULL OR t.lease_until < :now)
             ORDER BY t.next_poll_at
             LIMIT :limit * {CANDIDATES_PER_CLAIM})
            UNION ALL
            (SELECT t.id, t.client_id, t.finish_p, t.next_poll_at,
                    COALESCE(t.upstream_submitted_at, t.submitted_at) AS submitted_at
             FROM tasks AS t
             WHERE t.client_id = c.id AND t.state = '{TaskState.PENDING}' AND t.finish_p IS NULL
               AND t.next_poll_at <= :aged_before AND t.expires_at > :now
               AND (t.lease_until IS NULL OR t.lease_until < :now)
             ORDER BY t.next_poll_at
             LIMIT :limit)
        ) AS due
    ),
    chances AS (
        SELECT c.id, c.client_id, c.next_poll_at,
               c.finish_p IS NULL AND c.next_poll_at <= :aged_before AS aged,
               COALESCE(c.finish_p, CASE
                   WHEN e.cdf IS NULL THEN NULL
                   WHEN c.whole_bins = 0 THEN 0.0
                   ELSE e.cdf[LEAST(c.whole_bins, cardinality(e.cdf))]
               END, 1.0) AS chance
        FROM (
            SELECT candidates.*, width_bucket(
                       EXTRACT(EPOCH FROM CAST(:now AS timestamptz) - candidates.submitted_at),
                       CAST(:edges AS float8[])) - 1 AS whole_bins
            FROM candidates
        ) AS c
        LEFT JOIN estimate AS e ON true
    ),
    turns AS (
        SELECT id, next_poll_at, row_number() OVER (
            PARTITION BY client_id ORDER BY aged DESC, chance DESC, next_poll_at, id
        ) AS turn
        FROM chances
    ),
    first_turns AS (
        SELECT id, turn, next_poll_at FROM turns
        ORDER BY turn, next_poll_at, id
        LIMIT :limit * {CANDIDATES_PER_CLAIM}
    ),
    chosen AS (
        SELECT t.id FROM first_turns AS f JOIN tasks AS t ON t.id = f.id
        WHERE t.state = '{TaskState.PENDING}' AND (t.lease_until IS NULL OR t.lease_until < :now)
        ORDER BY f.turn, f.next_poll_at, t.id
        LIMIT :limit
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE tasks SET lease_token = :token, lease_until = :lease_until
    WHERE id IN (SELECT id FROM chosen)
    RETURNING id
    """  # noqa: S608 - only constants and enum values are interpolated
)


async def claim_due_tasks(
    session: AsyncSession,
    now: datetime,
    lease_s: float,
    limit: int,
    *,
    account: str | None = None,
) -> tuple[uuid.UUID, list[int]]:
    """Lease up to `limit` due pending tasks, shared fairly across clients (see _CLAIM_DUE), a
    first poll's chance read off `account`'s estimate (None: first polls first); returns the
    lease token and ids.

    Rows another claimer holds locked are skipped, and a live lease excludes a row, so concurrent
    schedulers never claim the same task for the same round.
    """
    # The planner cannot know how few rows the per-client windows hold and would compile the
    # statement with JIT, which alone cost ~45 ms a round in bench/scale.py.
    await session.execute(text("SET LOCAL jit = off"))
    return await claim_due(
        session,
        _CLAIM_DUE,
        now,
        lease_s,
        limit,
        {
            "account": account,
            "aged_before": now - timedelta(seconds=FIRST_POLL_MAX_WAIT_S),
            "edges": list(EDGES),
        },
    )
