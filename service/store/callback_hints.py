"""Upstream's callback as a hint: the client's callback token, and the one statement a hint costs.

A hint never carries a result; all it may do is make one pending task due now (not one that has
its answer and waits for a re-check: no poll is planned for it), at most once per minimum
interval (`tasks.last_hint_at`, checked in the same UPDATE), or, when the client has no such task
yet, be remembered in `early_hints` so the task's first poll comes at once. A callback
that comes just after a poll found its answer is counted as heard rather than missed in the
client's callback record (service/domain/callback_trust.py), once per task. The client
is found by the SHA-256 of the token (unique index), so the lookup's timing says nothing about
the token; the task by its (client_id, task_id) unique index.

Raw psycopg on the API's pool (service/store/__init__.py): a hint arrives for every check, and
upstream expects a quick answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from service.domain.callback_trust import HALF_LIFE_S
from service.domain.states import HintOutcome, TaskState
from service.store.callback_trust import record_columns, record_of_row


# A hint within the interval of the last one is not dropped but deferred to the interval's end
# (once: `last_hint_at` then lies in the future and later hints are throttled), so a forged hint
# just before the real one delays the real one by at most the interval, and hint-triggered polls
# stay at most one per interval.
@dataclass(frozen=True)
class HintResult:
    outcome: HintOutcome
    # The client's oldest early hints dropped to keep it within its cap.
    early_dropped: int = 0


_APPLY_HINT = f"""
    WITH client AS (
        (SELECT id FROM clients WHERE callback_token_hash = %(token_hash)s)
        UNION ALL
        (SELECT id FROM clients WHERE previous_callback_token_hash = %(token_hash)s
           AND previous_callback_valid_until > %(now)s)
        LIMIT 1
    ),
    -- The task by its unique (client_id, task_id), then written by its id: given both
    -- `client_id` and `state`, a generic plan scanned the client's pending tasks in
    -- ix_tasks_client_id_state_id, dead versions included (a hint took 40 ms after 20,000
    -- checks in bench/jobs.py). A generic plan made while `tasks` was small can still choose
    -- it, and an index of every pending task for `hinted`: the table's next ANALYZE remakes it
    -- (service/domain/table_statistics.py).
    known AS (
        SELECT id, state FROM tasks
        WHERE client_id = (SELECT id FROM client) AND task_id = %(task_id)s
    ),
    hinted AS (
        UPDATE tasks SET
            next_poll_at = LEAST(
                next_poll_at, expires_at,
                GREATEST(%(now)s, last_hint_at + %(interval)s)),
            last_hint_at = GREATEST(%(now)s, last_hint_at + %(interval)s)
        WHERE id = (SELECT id FROM known)
          AND state = '{TaskState.PENDING}' AND next_poll_at IS NOT NULL
          AND (last_hint_at IS NULL OR last_hint_at <= %(now)s)
        RETURNING last_hint_at > %(now)s AS deferred
    ),
    late AS (
        UPDATE tasks SET last_hint_at = %(now)s
        WHERE id = (SELECT id FROM known)
          AND expects_callback AND last_hint_at IS NULL AND poll_count > 0
          AND (state = '{TaskState.COMPLETED}' AND completed_at >= %(late_since)s
               OR state = '{TaskState.PENDING}' AND next_poll_at IS NULL
                  AND answered_at >= %(late_since)s)
        RETURNING client_id,
            EXTRACT(EPOCH FROM %(now)s - COALESCE(completed_at, answered_at)) AS lateness_s
    ),
    early AS (
        INSERT INTO early_hints (client_id, task_id, received_at, expires_at)
        SELECT id, %(task_id)s, %(now)s, %(early_until)s FROM client
        WHERE NOT EXISTS (SELECT 1 FROM known)
        ON CONFLICT (client_id, task_id) DO NOTHING
        RETURNING client_id
    ),
    -- The statement sees the rows as they were before it: keeping the newest max - 1 of them
    -- leaves max with the one just written.
    dropped AS (
        DELETE FROM early_hints
        WHERE client_id = (SELECT client_id FROM early)
          AND task_id IN (
              SELECT task_id FROM early_hints
              WHERE client_id = (SELECT client_id FROM early)
              ORDER BY received_at DESC, task_id DESC
              OFFSET %(early_max)s - 1)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM client) AS client_known,
           EXISTS (SELECT 1 FROM late) AS late,
           (SELECT client_id FROM late) AS late_client_id,
           (SELECT lateness_s FROM late) AS lateness_s,
           (SELECT deferred FROM hinted) AS deferred,
           (SELECT state FROM known) AS state,
           (SELECT count(*) FROM dropped) AS early_dropped
"""  # noqa: S608 - only constants are interpolated

_LOCK_RECORD = """
    SELECT heard, missed, lossy, outage, streak, streak_age_s, late_s, updated_at
    FROM callback_records WHERE client_id = %s FOR UPDATE
"""

_WRITE_RECORD = """
    UPDATE callback_records SET
        heard = %(heard)s, missed = %(missed)s, trusted = %(trusted)s, lossy = %(lossy)s,
        outage = %(outage)s, streak = %(streak)s, streak_age_s = %(streak_age_s)s,
        late_s = %(late_s)s, updated_at = GREATEST(updated_at, %(now)s)
    WHERE client_id = %(client_id)s
"""

_CALLBACK_GENERATION = "SELECT callback_generation, callback_token_hash FROM clients WHERE id = %s"

# The digest of this generation's token, where it is not the one kept: on first use (none yet),
# or when the deployment's secret key changed (another digest). A digest being replaced stays
# accepted until grace_until, as after a rotation. Nothing happens if a rotation came first.
_KEEP_CALLBACK_DIGEST = """
    UPDATE clients SET
        previous_callback_token_hash = COALESCE(callback_token_hash, previous_callback_token_hash),
        previous_callback_valid_until = CASE WHEN callback_token_hash IS NULL
            THEN previous_callback_valid_until ELSE %(grace_until)s END,
        callback_token_hash = %(token_hash)s
    WHERE id = %(client_id)s AND callback_generation = %(generation)s
      AND callback_token_hash IS DISTINCT FROM %(token_hash)s
"""


async def apply_hint(
    conn: AsyncConnection[DictRow],
    *,
    token_hash: bytes,
    task_id: str,
    now: datetime,
    interval: timedelta,
    early_until: datetime,
    late_since: datetime,
    early_max: int,
) -> HintResult:
    """Make the client's pending task due now, or at the end of `interval` after the last hint
    (THROTTLED); remember the hint until `early_until` when the client has no such task, keeping
    at most `early_max` of its early hints (the oldest are dropped); when a poll completed the
    task since `late_since` before its callback came (LATE), count that callback as heard, not
    missed (a second statement, `count_late_callback`). The token is the client's current one or,
    until its grace ends, the previous one. One statement otherwise."""
    cursor = await conn.execute(
        _APPLY_HINT,
        {
            "token_hash": token_hash,
            "task_id": task_id,
            "now": now,
            "interval": interval,
            "early_until": early_until,
            "late_since": late_since,
            "early_max": early_max,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    if row["late"]:
        await count_late_callback(conn, int(row["late_client_id"]), float(row["lateness_s"]), now)
    return HintResult(_outcome(row), int(row["early_dropped"]))


async def count_late_callback(
    conn: AsyncConnection[DictRow], client_id: int, lateness_s: float, now: datetime
) -> None:
    """Count a callback that came `lateness_s` after the poll that found its answer as heard in
    the client's record (service/domain/callback_trust.py, `heard_late`), in one transaction."""
    async with conn.transaction():
        cursor = await conn.execute(_LOCK_RECORD, (client_id,))
        row = await cursor.fetchone()
        if row is None:
            return
        elapsed_s = (now - row["updated_at"]).total_seconds()
        record = record_of_row(row).decayed(elapsed_s, HALF_LIFE_S).heard_late(lateness_s)
        await conn.execute(
            _WRITE_RECORD,
            {**record_columns(record), "client_id": client_id, "now": now},
        )


def _outcome(row: DictRow) -> HintOutcome:
    if not row["client_known"]:
        return HintOutcome.UNKNOWN
    if row["late"]:
        return HintOutcome.LATE
    if row["deferred"] is not None:
        return HintOutcome.THROTTLED if row["deferred"] else HintOutcome.MATCHED
    if row["state"] is None:
        return HintOutcome.EARLY
    if row["state"] == TaskState.PENDING:
        return HintOutcome.THROTTLED
    return HintOutcome.UNKNOWN


async def callback_generation(
    conn: AsyncConnection[DictRow], client_id: int
) -> tuple[int, bytes | None]:
    """The client's callback generation and the digest kept for it (None before first use)."""
    cursor = await conn.execute(_CALLBACK_GENERATION, (client_id,))
    row = await cursor.fetchone()
    assert row is not None, f"no client {client_id}"
    stored = row["callback_token_hash"]
    return int(row["callback_generation"]), None if stored is None else bytes(stored)


async def keep_callback_digest(
    conn: AsyncConnection[DictRow],
    client_id: int,
    *,
    generation: int,
    token_hash: bytes,
    grace_until: datetime,
) -> None:
    """Keep `token_hash` as the digest of the client's callback token of `generation`."""
    await conn.execute(
        _KEEP_CALLBACK_DIGEST,
        {
            "client_id": client_id,
            "generation": generation,
            "token_hash": token_hash,
            "grace_until": grace_until,
        },
    )
