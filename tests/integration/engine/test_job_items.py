"""The job-item side of the scheduled-submit engine (service/engine/job_items.py) called on one
claimed batch, against the simulator and Redis: items go upstream at their slots and become
tasks, a batch marked `submitting` a group at a time (what a worker's death can leave `unknown`);
while upstream is paused nothing is sent and the items wait again; an item whose job was
paused after the claim is skipped, unsent; past the client's daily check budget an item waits for
the next UTC midnight and its job is paused for the budget."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
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
from service.engine.slot_sends import MarkedCap
from service.features import check_jobs as job_feature
from service.heartbeat import LeaseKeeper
from service.sealed_numbers import number_seal_for
from service.sim.server import SimServer
from service.store.budgets import checks_on
from service.store.db import transaction
from service.store.job_items import ClaimedItem, load_claimed_items
from service.store.leases import LeasedTable
from service.store.scheduled_submits import claim_due_submits
from service.upstream.client import UpstreamClient
from service.upstream.gate import UpstreamGate
from service.upstream.pause import close_pause, open_pause
from service.upstream.ratelimit import SlotReservation, UpstreamRateLimiter
from service.upstream.reaction import UpstreamReaction
from tests.support.checks import submit_calls
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE, make_job
from tests.support.settings import engine_settings

pytestmark = pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks")

SLOW_READ_S = 0.3


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


class SlotsSeen(UpstreamRateLimiter):
    """The wall-clock time of each call slot it hands out."""

    def __init__(self, redis: Redis[Any], rate: float) -> None:
        super().__init__(redis, rate)
        self.slots: list[float] = []

    async def reserve_calls(self, count: int) -> SlotReservation:
        reservation = await super().reserve_calls(count)
        now = time.time()
        self.slots += [now + offset for offset in reservation.offsets()]
        return reservation


async def test_a_slow_callback_url_read_delays_no_call_past_its_slot(
    item_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis[Any],
    fresh_sim: SimServer,
) -> None:
    """A client's callback URL is cached and read again from the database every 30 s. Read at
    the slot, that read sent the call behind it late, beside the next slots' calls; read before
    the group's slots, it delays nothing past its slot (slots 2 ms apart here)."""
    fresh_sim.control.configure(submit_script="ring-1")
    client = await insert_client(sessions)
    await make_job(sessions, item_settings, client)
    cached: set[int] = set()

    async def callback_url_for(client_id: int) -> str:
        if client_id not in cached:
            await asyncio.sleep(SLOW_READ_S)
            cached.add(client_id)
        return f"http://127.0.0.1:9/hooks/{client_id}"

    limiter = SlotsSeen(redis_client, item_settings.upstream_max_rps)
    reaction = UpstreamReaction(
        redis_client,
        limiter,
        UpstreamGate(redis_client, limiter),
        pause_probe_s=item_settings.pause_probe_s,
    )
    upstream = UpstreamClient(item_settings)
    seal = number_seal_for(item_settings)
    submitter = JobItemSubmitter(
        item_settings,
        sessions,
        upstream,
        reaction,
        lambda: seal,
        lease=timedelta(seconds=10),
        callback_url_for=callback_url_for,
    )
    try:
        token, items = await claimed(sessions)
        outcomes = await submitter.submit_items(items, token, utc_now())
    finally:
        await upstream.aclose()

    assert outcomes == ["submitted"] * 3
    submits = sorted(call["at"] for call in fresh_sim.control.calls(endpoint="submit"))
    assert len(submits) == 3
    assert len(limiter.slots) == 3
    # Each call reached upstream near its slot, not a slow read after it.
    assert all(at - slot < SLOW_READ_S / 2 for at, slot in zip(submits, limiter.slots, strict=True))


async def submitting(sessions: async_sessionmaker[AsyncSession], job_pk: int) -> int:
    async with transaction(sessions) as session:
        count = await session.execute(
            text(
                "SELECT count(*) FROM scheduled_submits WHERE job_pk = :pk AND state = 'submitting'"
            ),
            {"pk": job_pk},
        )
        return int(count.scalar_one())


async def submitting_leases(
    sessions: async_sessionmaker[AsyncSession], job_pk: int
) -> list[datetime]:
    async with transaction(sessions) as session:
        rows = await session.execute(
            text(
                "SELECT lease_until FROM scheduled_submits"
                " WHERE job_pk = :pk AND state = 'submitting'"
            ),
            {"pk": job_pk},
        )
        return [row[0] for row in rows]


async def test_a_process_holds_at_most_its_cap_marked_whatever_the_batches(
    item_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    redis_client: Redis[Any],
) -> None:
    """A worker that dies leaves `unknown` what it had marked `submitting` and not written back:
    at any moment at most its cap (the calls that may have started and the next group), however
    many batches it holds, never a whole batch; found in the chaos suite, where one SIGKILL made
    310 of a job's 340 items `unknown` while most still waited for their slots, then 73 with a
    bound per batch (two groups) while a worker held several batches."""
    fresh_sim.control.configure(submit_script="ring-1")
    # Answers that take a while, so that each group's items stay `submitting` to be seen.
    fresh_sim.control.replace_faults(probabilities={"slow": 1.0}, slow_s=0.3)
    upstream = UpstreamClient(item_settings)
    seal = number_seal_for(item_settings)
    cap = MarkedCap(6)
    submitter = JobItemSubmitter(
        item_settings,
        sessions,
        upstream,
        UpstreamReaction.from_settings(redis_client, item_settings),
        lambda: seal,
        lease=timedelta(seconds=10),
        marked_at_once=3,
        cap=cap,
    )
    client = await insert_client(sessions)
    numbers = [mx_number(i) for i in range(70, 94)]
    job = await make_job(sessions, item_settings, client, numbers)
    # Running already: batches that begin a queued job together can deadlock on its row (two
    # FOR SHARE locks, each then wanting to update it), which is not what this shows.
    async with transaction(sessions) as session:
        await job_feature.system_move(session, job, JobMove.BEGIN, utc_now())
    # Three batches held at once, as a worker given several messages.
    claims = [await claimed(sessions, limit=8) for _ in range(3)]
    assert sum(len(items) for _, items in claims) == len(numbers)

    batches = [
        asyncio.create_task(submitter.submit_items(items, token, utc_now()))
        for token, items in claims
    ]
    most = 0
    try:
        while not all(batch.done() for batch in batches):
            most = max(most, await submitting(sessions, job.id))
            assert cap.held <= cap.most
            await asyncio.sleep(0.01)
        outcomes = [outcome for batch in batches for outcome in await batch]
    finally:
        await upstream.aclose()

    assert outcomes == ["submitted"] * len(numbers)
    # Per batch (two groups of 3 each), three batches would have held 18 marked at once.
    assert 3 <= most <= cap.most, most
    assert cap.held == 0
    submitted = [call["phone_number"] for call in fresh_sim.control.calls(endpoint="submit")]
    assert sorted(submitted) == sorted(n.replace(" ", "").lstrip("+") for n in numbers)


async def test_the_heartbeat_renews_an_items_submitting_lease_while_its_call_lasts(
    item_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    redis_client: Redis[Any],
) -> None:
    """A live worker slowed down (a starved CPU) keeps its items `submitting` past the lease its
    mark gave them: the heartbeat renews them from the call on, never shortens them, and lets
    them go once the answer is written."""
    fresh_sim.control.configure(submit_script="ring-1")
    fresh_sim.control.replace_faults(probabilities={"slow": 1.0}, slow_s=0.5)
    upstream = UpstreamClient(item_settings)
    seal = number_seal_for(item_settings)
    leases = LeaseKeeper(sessions, 30.0)
    submitter = JobItemSubmitter(
        item_settings,
        sessions,
        upstream,
        UpstreamReaction.from_settings(redis_client, item_settings),
        lambda: seal,
        lease=timedelta(seconds=10),
        leases=leases,
    )
    client = await insert_client(sessions)
    job = await make_job(sessions, item_settings, client, [mx_number(95)])
    token, items = await claimed(sessions)
    batch = asyncio.create_task(submitter.submit_items(items, token, utc_now()))
    try:
        await wait_for(lambda: bool(leases.held), batch)
        [marked] = await submitting_leases(sessions, job.id)
        assert marked <= utc_now() + timedelta(seconds=10)
        # A shorter renewal leaves the mark's lease as it was.
        shorter = LeaseKeeper(sessions, 1.0)
        with shorter.hold(LeasedTable.SCHEDULED_SUBMITS, token, (items[0].id,), utc_now()):
            assert await shorter.renew() == 1
        assert await submitting_leases(sessions, job.id) == [marked]
        before = utc_now()
        assert await leases.renew() == 1
        [renewed] = await submitting_leases(sessions, job.id)
        assert renewed >= before + timedelta(seconds=30)
        outcomes = await batch
    finally:
        await upstream.aclose()
    assert outcomes == ["submitted"]
    assert leases.held == []
    assert await submitting_leases(sessions, job.id) == []


async def wait_for(ready: Callable[[], bool], batch: asyncio.Task[Any]) -> None:
    """Until `ready()`, while the batch runs."""
    while not ready():
        assert not batch.done(), batch.result()
        await asyncio.sleep(0.005)


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
