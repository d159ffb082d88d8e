"""Creating a check job (service/features/check_job_creation.py) across a rotation of
PHONEBRIDGE_SECRET_KEY: once the new key writes and the old one is listed in
PHONEBRIDGE_SECRET_KEY_PREVIOUS, what was kept under the old key's number digest still matches,
as docs/operations.md promises: an earlier answer for `max_age_s`, and a job's Idempotency-Key
retried with the same body."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.answers import PhoneResult
from service.domain.phone_numbers import digest_of_digits
from service.features.check_job_creation import CreatedJob, JobMedia, JobSecrets, create_job
from service.number_digests import number_digest_keys
from service.store.checks import NewTask, record_submitted_task
from service.store.db import transaction
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE
from tests.support.settings import make_settings

OLD = "the-old-secret-key-of-this-deployment"
NEW = "the-new-secret-key-of-this-deployment"


async def create(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    client_id: int,
    numbers: list[str],
    *,
    key: str | None = None,
    max_age_s: int = 0,
) -> CreatedJob:
    body = ("phone_number\n" + "\n".join(numbers) + "\n").encode()
    async with transaction(sessions) as session:
        return await create_job(
            session,
            client_id,
            media=JobMedia.CSV,
            body=body,
            query=[("start", "false"), ("max_age_s", str(max_age_s))],
            idempotency_key=key,
            settings=settings,
            secrets=JobSecrets.of(settings),
            pace=PACE,
            now=utc_now(),
        )


async def answered_before(
    sessions: async_sessionmaker[AsyncSession], client_id: int, digest: bytes
) -> int:
    """A check of the number answered five minutes ago, kept with `digest`; its row id."""
    at = utc_now() - timedelta(minutes=5)
    async with transaction(sessions) as session:
        task = await record_submitted_task(
            session,
            NewTask(
                client_id=client_id,
                task_id=f"T-{uuid.uuid4().hex}",
                masked="5255******01",
                metadata_json="{}",
                now=at,
                expires_at=at + timedelta(days=1),
                first_poll_at=at,
                result=PhoneResult("5255******01", "ring"),
                request_id=None,
                number_digest=digest,
            ),
        )
        return task.id


async def test_after_the_switch_what_the_old_digest_kept_still_matches(
    sessions: async_sessionmaker[AsyncSession], database_url: str, redis_url: str
) -> None:
    before = make_settings(database_url, redis_url, secret_key=OLD)
    switched = make_settings(database_url, redis_url, secret_key=NEW, secret_key_previous=OLD)
    only_new = make_settings(database_url, redis_url, secret_key=NEW)
    client = await insert_client(sessions)
    [old_key] = number_digest_keys(before)
    await answered_before(sessions, client, digest_of_digits(old_key, "525500000001"))
    numbers = [mx_number(1), mx_number(2)]
    first = await create(sessions, before, client, numbers, key="order-1")

    replayed = await create(sessions, switched, client, numbers, key="order-1")
    cached = await create(sessions, switched, client, numbers, max_age_s=600)
    # Once the old key is dropped, an answer kept under it is a miss (a new check).
    missed = await create(sessions, only_new, client, numbers, max_age_s=600)

    assert (replayed.created, replayed.view.job.id) == (False, first.view.job.id)
    assert (cached.view.counts.cached, cached.view.counts.to_submit) == (1, 1)
    assert (missed.view.counts.cached, missed.view.counts.to_submit) == (0, 2)
