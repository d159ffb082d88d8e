"""What each client's upstream callbacks did (service/domain/callback_trust.py), in PostgreSQL.

A poll write-back that completes callback-carrying checks counts them here, in its own
transaction: the rows are created when missing, locked in client order (two batches cannot
deadlock), decayed to the writer's `now`, counted and judged by the domain rule, and written back.
When a client's callbacks stop being trusted, its checks still waiting on theirs are made due
(no later than a registered task's second poll would be) in a transaction of their own, so none
keeps waiting on a sparse safety net that assumed its callback would come.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.callback_trust import CallbackRecord
from service.domain.states import TaskState

_CREATE_MISSING = text(
    """
    INSERT INTO callback_records (client_id, heard, missed, trusted, lossy, outage, streak,
                                  streak_age_s, late_s, updated_at)
    SELECT client_id, 0, 0, true, false, false, 0, 0, 0, :now
    FROM unnest(CAST(:client_ids AS bigint[])) AS client_id
    ORDER BY client_id
    ON CONFLICT (client_id) DO NOTHING
    """
)

_LOCK = text(
    """
    SELECT client_id, heard, missed, lossy, outage, streak, streak_age_s, late_s, updated_at
    FROM callback_records
    WHERE client_id = ANY(CAST(:client_ids AS bigint[]))
    ORDER BY client_id
    FOR UPDATE
    """
)

_WRITE = text(
    """
    UPDATE callback_records AS r SET
        heard = v.heard, missed = v.missed, trusted = v.trusted, lossy = v.lossy,
        outage = v.outage, streak = v.streak, streak_age_s = v.streak_age_s, late_s = v.late_s,
        updated_at = GREATEST(r.updated_at, :now)
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS v(client_id bigint, heard float8, missed float8, trusted boolean, lossy boolean,
             outage boolean, streak integer, streak_age_s float8, late_s float8)
    WHERE r.client_id = v.client_id
    """
)

# The checks of a client whose callbacks are no longer trusted that still wait for theirs: due
# now, or at the age a registered task's second poll would come if they are younger. Rows another
# transaction holds (a batch writing its answers back) are skipped: they are being polled.
_STOP_WAITING = text(
    f"""
    UPDATE tasks SET
        next_poll_at = LEAST(
            next_poll_at, expires_at,
            GREATEST(CAST(:now AS timestamptz), submitted_at + make_interval(secs => :first_s))),
        updated_at = :now
    WHERE id IN (
        SELECT id FROM tasks
        WHERE client_id = :client_id AND state = '{TaskState.PENDING}'
          AND expects_callback AND last_hint_at IS NULL
        FOR UPDATE SKIP LOCKED
    )
    """  # noqa: S608 - only enum values are interpolated
)

_READ = text(
    "SELECT heard, missed, lossy, outage, streak, streak_age_s, late_s FROM callback_records "
    "WHERE client_id = :client_id"
)


@dataclass(frozen=True)
class CallbackCount:
    """One client's callback-carrying checks completed by one write-back."""

    heard: int = 0
    missed: int = 0


@dataclass(frozen=True)
class TrustChange:
    client_id: int
    record: CallbackRecord


async def count_callbacks(
    session: AsyncSession,
    counts: Mapping[int, CallbackCount],
    now: datetime,
    *,
    half_life_s: float,
    tolerance: float,
) -> list[TrustChange]:
    """Add `counts` (by client id) to the clients' records and judge them again; returns the
    clients whose trust changed. The caller makes the waiting checks of a client that lost it due
    (`stop_waiting`), after this transaction: it holds the record rows, and the tasks come after
    them in no other transaction's lock order."""
    if not counts:
        return []
    client_ids = sorted(counts)
    await session.execute(_CREATE_MISSING, {"client_ids": client_ids, "now": now})
    rows = (await session.execute(_LOCK, {"client_ids": client_ids})).all()
    updated: list[dict[str, object]] = []
    changes: list[TrustChange] = []
    for row in rows:
        before = record_of_row(row._mapping)
        count = counts[int(row.client_id)]
        elapsed_s = (now - row.updated_at).total_seconds()
        after = before.decayed(elapsed_s, half_life_s).after(count.heard, count.missed, tolerance)
        updated.append({"client_id": int(row.client_id), **record_columns(after)})
        if after.trusted != before.trusted:
            changes.append(TrustChange(int(row.client_id), after))
    await session.execute(_WRITE, {"rows": orjson.dumps(updated).decode(), "now": now})
    return changes


async def stop_waiting(
    session: AsyncSession, client_id: int, now: datetime, *, first_poll_s: float
) -> int:
    """Make the client's checks still waiting for a callback due (now, or `first_poll_s` after
    submission if later); returns how many."""
    result = await session.execute(
        _STOP_WAITING, {"client_id": client_id, "now": now, "first_s": first_poll_s}
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def callback_record(session: AsyncSession, client_id: int) -> CallbackRecord:
    """The client's record as stored (not decayed); a client never counted is trusted."""
    row = (await session.execute(_READ, {"client_id": client_id})).one_or_none()
    if row is None:
        return CallbackRecord()
    return record_of_row(row._mapping)


def record_of_row(row: Mapping[Any, Any]) -> CallbackRecord:
    """The record of a `callback_records` row (as stored, not decayed)."""
    return CallbackRecord(
        heard=float(row["heard"]),
        missed=float(row["missed"]),
        lossy=bool(row["lossy"]),
        outage=bool(row["outage"]),
        streak=int(row["streak"]),
        streak_age_s=float(row["streak_age_s"]),
        late_s=float(row["late_s"]),
    )


def record_columns(record: CallbackRecord) -> dict[str, object]:
    """The columns a record writes; `trusted` is what the poll and submit statements read."""
    return {
        "heard": record.heard,
        "missed": record.missed,
        "trusted": record.trusted,
        "lossy": record.lossy,
        "outage": record.outage,
        "streak": record.streak,
        "streak_age_s": record.streak_age_s,
        "late_s": record.late_s,
    }
