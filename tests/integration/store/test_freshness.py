"""`max_age_s` lookups (service/store/freshness.py) on the real PostgreSQL: the latest completed
check of a number younger than the window, by its keyed digest (under any listed key, during a
rotation); never an older one, never one without a final answer, never another client's."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.answers import PhoneResult
from service.store import freshness
from service.store.checks import NewTask, record_submitted_task
from service.store.db import transaction
from tests.support.checks import PHONE_MASKED
from tests.support.factories import insert_client

RING = PhoneResult("5255********", "ring")
DIGEST = uuid.uuid4().bytes * 2


async def checked(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    *,
    age: timedelta,
    result: PhoneResult | None = RING,
    digest: bytes = DIGEST,
) -> int:
    """A submitted check of the number answered `age` ago (pending without `result`)."""
    at = utc_now() - age
    async with transaction(sessions) as session:
        task = await record_submitted_task(
            session,
            NewTask(
                client_id=client_id,
                task_id=f"T-{uuid.uuid4().hex}",
                masked=PHONE_MASKED,
                metadata_json="{}",
                now=at,
                expires_at=at + timedelta(days=1),
                first_poll_at=at,
                result=result,
                request_id=None,
                number_digest=digest,
            ),
        )
        return task.id


async def lookup(
    sessions: async_sessionmaker[AsyncSession], client_id: int, max_age_s: int
) -> dict[bytes, int]:
    async with transaction(sessions) as session:
        return await freshness.recent_answers(
            session, client_id, [(DIGEST,), (b"\x00" * 32,)], max_age_s=max_age_s, now=utc_now()
        )


async def test_the_latest_final_answer_within_the_window_answers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    await checked(sessions, client, age=timedelta(minutes=30))
    latest = await checked(sessions, client, age=timedelta(minutes=5))
    await checked(sessions, client, age=timedelta(minutes=1), result=None)  # still pending
    assert await lookup(sessions, client, 3600) == {DIGEST: latest}
    async with transaction(sessions) as session:
        shown = await freshness.task_json_text(session, latest)
        one = await freshness.recent_answer(
            session, client, [DIGEST], max_age_s=3600, now=utc_now()
        )
    assert one == latest
    assert '"phone_status":"ring"' in shown


async def test_a_number_matches_by_its_digest_under_any_listed_key_the_latest_answer_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    current, previous, other = (uuid.uuid4().bytes * 2 for _ in range(3))
    under_previous = await checked(sessions, client, age=timedelta(minutes=5), digest=previous)
    await checked(sessions, client, age=timedelta(minutes=20), digest=current)
    async with transaction(sessions) as session:
        found = await freshness.recent_answers(
            session, client, [(current, previous), (other,)], max_age_s=3600, now=utc_now()
        )
        one = await freshness.recent_answer(
            session, client, [current, previous], max_age_s=3600, now=utc_now()
        )
    # By the number's current digest, whichever digest its latest answer was kept under.
    assert found == {current: under_previous}
    assert one == under_previous


async def test_an_answer_older_than_max_age_s_or_max_age_s_0_answers_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    await checked(sessions, client, age=timedelta(minutes=30))
    assert await lookup(sessions, client, 600) == {}
    assert await lookup(sessions, client, 0) == {}


async def test_another_clients_answer_is_never_used(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client, other = await insert_client(sessions), await insert_client(sessions)
    await checked(sessions, other, age=timedelta(minutes=1))
    assert await lookup(sessions, client, 3600) == {}


async def test_the_lookup_reads_the_freshness_index(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    async with transaction(sessions) as session:
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            row[0]
            for row in await session.execute(
                text(
                    "EXPLAIN SELECT t.id FROM tasks t WHERE t.client_id = :c "
                    "AND t.number_digest = :d AND t.number_digest IS NOT NULL "
                    "AND t.state = 'completed' AND t.completed_at > now() "
                    "ORDER BY t.completed_at DESC LIMIT 1"
                ),
                {"c": client, "d": DIGEST},
            )
        )
    assert "ix_tasks_client_id_number_digest_completed_at" in plan
