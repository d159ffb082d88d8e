"""`max_age_s`: this client's latest completed check of a number, found by the number's keyed
digest (`tasks.number_digest`), never by the number and never across clients.

A final answer is a completed task's result (`completed_at` is when it came): an expired or failed
check answered nothing, so it is never reused. Both lookups read the partial index
ix_tasks_client_id_number_digest_completed_at backwards, one probe per digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.schemas import TaskOut
from service.domain.states import TaskState

# Digests looked up per statement: a 100,000-item job asks in a few round trips.
DIGESTS_PER_LOOKUP = 10_000

# The predicate spelled as the index's (`number_digest IS NOT NULL AND state = 'completed'`).
# Each digest comes with the index of the number it is of, so that a number's digests under a
# rotation's previous keys answer for it too.
_LATEST = text(
    f"""
    SELECT d.owner, latest.id, latest.completed_at
    FROM unnest(CAST(:digests AS bytea[]), CAST(:owners AS int[])) AS d(digest, owner)
    CROSS JOIN LATERAL (
        SELECT t.id, t.completed_at FROM tasks AS t
        WHERE t.client_id = :client_id AND t.number_digest = d.digest
          AND t.number_digest IS NOT NULL AND t.state = '{TaskState.COMPLETED}'
          AND t.completed_at > :since
        ORDER BY t.completed_at DESC
        LIMIT 1
    ) AS latest
    """  # noqa: S608 - only enum values are interpolated
)


async def recent_answers(
    session: AsyncSession,
    client_id: int,
    numbers: Sequence[Sequence[bytes]],
    *,
    max_age_s: int,
    now: datetime,
) -> dict[bytes, int]:
    """For each number that this client checked with a final answer younger than `max_age_s`,
    the row id of the latest such task, by the number's current digest. A number is given as its
    digests under every listed key, the current first (service/number_digests.py), so an answer
    kept before a rotation still matches while the old key is listed. Nothing when `max_age_s`
    is 0."""
    if max_age_s <= 0 or not numbers:
        return {}
    since = now - timedelta(seconds=max_age_s)
    pairs = [(digest, owner) for owner, digests in enumerate(numbers) for digest in digests]
    latest: dict[int, tuple[datetime, int]] = {}
    for start in range(0, len(pairs), DIGESTS_PER_LOOKUP):
        chunk = pairs[start : start + DIGESTS_PER_LOOKUP]
        result = await session.execute(
            _LATEST,
            {
                "digests": [digest for digest, _ in chunk],
                "owners": [owner for _, owner in chunk],
                "client_id": client_id,
                "since": since,
            },
        )
        for owner, task_pk, completed_at in result:
            found = latest.get(owner)
            if found is None or completed_at > found[0]:
                latest[owner] = (completed_at, int(task_pk))
    return {numbers[owner][0]: task_pk for owner, (_, task_pk) in latest.items()}


async def recent_answer(
    session: AsyncSession,
    client_id: int,
    digests: Sequence[bytes],
    *,
    max_age_s: int,
    now: datetime,
) -> int | None:
    """The row id of this client's latest completed check of that number (its digests under
    every listed key, the current first) younger than `max_age_s`, or None."""
    found = await recent_answers(session, client_id, [digests], max_age_s=max_age_s, now=now)
    return found.get(digests[0])


_TASK_ROW_JSON = text("SELECT row_to_json(t)::text FROM tasks AS t WHERE t.id = :id")


async def task_json_text(session: AsyncSession, task_pk: int) -> str:
    """The earlier task's JSON as the contract shows it (TaskOut), for the answer."""
    row_json = (await session.execute(_TASK_ROW_JSON, {"id": task_pk})).scalar_one()
    return TaskOut.model_validate_json(row_json).model_dump_json()
