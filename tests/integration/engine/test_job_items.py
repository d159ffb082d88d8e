"""The job-item side of the scheduled-submit engine (service/engine/job_items.py) called on one
claimed batch, against the simulator and Redis: items go upstream at their slots and become
tasks, a batch marked `submitting` a group at a time (what a worker's death can leave `unknown`);
while upstream is paused nothing is sent and the items wait again; an item whose job was
paused after the claim is skipped, unsent; past the client's daily check budget an item waits for
the next UTC midnight and its job is paused for the budget."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.budgets import utc_day
from service.domain.job_lifecycle import JobMove
from service.domain.states import JobState, PausedReason
from service.engine.job_items import HANDED_BACK, SKIPPED, JobItemSubmitter
from service.engine.slot_sends import GROUPS_IN_FLIGHT
from service.features import check_jobs as job_feature
from service.sealed_numbers import number_seal_for
from service.sim.server import SimServer
from service.store.budgets import checks_on
from service.store.db import transaction
from service.store.job_items import ClaimedItem, load_claimed_items
from service.store.scheduled_submits import claim_due_submits
from service.upstream.client import UpstreamClient
from service.upstream.pause import close_pause, open_pause
from service.upstream.reaction import UpstreamReaction
from tests.support.checks import submit_calls
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE, make_job
from tests.support.settings import engine_settings

pytestmark = pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks")


@pytest.fixture
def item_settings(database_url: str, redis_url: str, fresh_sim: SimServer) -> Settings:
    return engine_settings(database_url, redis_url, fresh_sim.base_url)


@pytest.fixture
async def submitter(
    item_settings: Settings, sessions: async_sessionmaker[AsyncSession], redis_client: Redis[Any]
) -> AsyncIterator[JobItemSubmitter]:
    upstream = UpstreamClient(item_settings)
    reaction = UpstreamReaction.from_settings(redis_client, item_settings)
    seal = number_seal_for(item_settings)
    yield JobItemSubmitter(
        item_settings, sessions, upstream, reaction, lambda: seal, lease=timedelta(seconds=10)
    )
    await upstream.aclose()


async def claimed(
    sessions: async_sessionmaker[AsyncSession], limit: int = 10
) -> tuple[uuid.UUID, list[ClaimedItem]]:
    now = utc_now()
    async with transaction(sessions) as session:
        token, ids = await claim_due_submits(session, now, lease_s=30, limit=limit)
        return token, await load_claimed_items(session, ids, token, now)


async def test_claimed_items_are_submitted_and_become_tasks(
    submitter: JobItemSubmitter,
    item_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
) -> None:
    fresh_sim.control.configure(submit_script="ring-1")
    client = await insert_client(sessions)
    job = await make_job(sessions, item_settings, client)
    token, items = await claimed(sessions)
    outcomes = await submitter.submit_items(items, token, utc_now())
    assert outcomes == ["submitted"] * 3
    assert submit_calls(fresh_sim) == 3
    async with transaction(sessions) as session:
        view = await job_feature.find_job(session, client, job.public_id, PACE, utc_now())
    assert view.job.state == "running"  # begun by its first item
    assert (view.counts.submitted, view.counts.pending) == (3, 3)


async def submitting(sessions: async_sessionmaker[AsyncSession], job_pk: int) -> int:
    async with transaction(sessions) as session:
        count = await session.execute(
            text(
                "SELECT count(*) FROM scheduled_submits WHERE job_pk = :pk AND state = 'submitting'"
            ),
            {"pk": job_pk},
        )
        return int(count.scalar_one())


async def test_a_batch_is_marked_submitting_a_group_at_a_time(
    item_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    redis_client: Redis[Any],
) -> None:
    """A worker that dies leaves `unknown` what it had marked `submitting` and not written back:
    at any moment at most two groups of its batch (the calls that may have started), never the
    whole batch; found in the chaos suite, where one SIGKILL made 310 of a job's 340 items
    `unknown` while most of them still waited for their slots."""
    fresh_sim.control.configure(submit_script="ring-1")
    # Answers that take a while, so that each group's items stay `submitting` to be seen.
    fresh_sim.control.replace_faults(probabilities={"slow": 1.0}, slow_s=0.3)
    upstream = UpstreamClient(item_settings)
    seal = number_seal_for(item_settings)
    submitter = JobItemSubmitter(
        item_settings,
        sessions,
        upstream,
        UpstreamReaction.from_settings(redis_client, item_settings),
        lambda: seal,
        lease=timedelta(seconds=10),
        marked_at_once=3,
    )
    client = await insert_client(sessions)
    numbers = [mx_number(i) for i in range(70, 82)]
    job = await make_job(sessions, item_settings, client, numbers)
    token, items = await claimed(sessions, limit=len(numbers))
    assert len(items) == len(numbers)

    batch = asyncio.create_task(submitter.submit_items(items, token, utc_now()))
    most = 0
    try:
        while not batch.done():
            most = max(most, await submitting(sessions, job.id))
            await asyncio.sleep(0.01)
        outcomes = await batch
    finally:
        await upstream.aclose()

    assert outcomes == ["submitted"] * len(numbers)
    assert 0 < most <= GROUPS_IN_FLIGHT * 3, most
    submitted = [call["phone_number"] for call in fresh_sim.control.calls(endpoint="submit")]
    assert sorted(submitted) == sorted(n.replace(" ", "").lstrip("+") for n in numbers)


async def test_nothing_is_sent_while_upstream_is_paused(
    submitter: JobItemSubmitter,
    item_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    redis_client: Redis[Any],
) -> None:
    client = await insert_client(sessions)
    await make_job(sessions, item_settings, client)
    token, items = await claimed(sessions)
    await open_pause(redis_client, "KEY_EXPIRED", datetime.now(UTC))
    try:
        outcomes = await submitter.submit_items(items, token, utc_now())
    finally:
        await close_pause(redis_client)
    assert outcomes == [HANDED_BACK] * 3
    assert submit_calls(fresh_sim) == 0


async def test_an_item_whose_job_was_paused_after_the_claim_is_skipped_unsent(
    submitter: JobItemSubmitter,
    item_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
) -> None:
    client = await insert_client(sessions)
    job = await make_job(sessions, item_settings, client)
    token, items = await claimed(sessions)
    async with transaction(sessions) as session:
        await job_feature.move_job_by_client(
            session, client, job.public_id, JobMove.PAUSE, PACE, utc_now()
        )
    outcomes = await submitter.submit_items(items, token, utc_now())
    assert outcomes == [SKIPPED] * 3
    assert submit_calls(fresh_sim) == 0


async def test_items_past_the_daily_budget_wait_and_pause_their_job(
    item_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    redis_client: Redis[Any],
) -> None:
    fresh_sim.control.configure(submit_script="ring-1")
    settings = item_settings.model_copy(update={"client_max_checks_per_day": 2})
    upstream = UpstreamClient(settings)
    seal = number_seal_for(settings)
    submitter = JobItemSubmitter(
        settings,
        sessions,
        upstream,
        UpstreamReaction.from_settings(redis_client, settings),
        lambda: seal,
        lease=timedelta(seconds=10),
    )
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client)
    token, items = await claimed(sessions)
    now = utc_now()
    try:
        outcomes = await submitter.submit_items(items, token, now)
    finally:
        await upstream.aclose()

    assert sorted(outcomes) == sorted(["submitted", "submitted", HANDED_BACK])
    assert submit_calls(fresh_sim) == 2
    async with transaction(sessions) as session:
        assert await checks_on(session, client, utc_day(now)) == 2
        view = await job_feature.find_job(session, client, job.public_id, PACE, utc_now())
    assert (view.job.state, view.job.paused_reason) == (JobState.PAUSED, PausedReason.BUDGET)
    assert (view.counts.submitted, view.counts.left_to_submit) == (2, 1)
