"""One leased task's poll at its rate slot (service/engine/task_poll.py), against the simulator and
the run's Redis: no call past the deadline (expired), within the deadline's margin (handed back
until the deadline), on a lease about to end, while paused (unless it is the probe) or blocked
by a Retry-After (handed back until it ends); otherwise one call, its answer kept with the
decision, and the process's reaction to it (an account problem opens the pause)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from service.domain.polling import DEADLINE_MARGIN, DecisionKind, PollPolicy
from service.domain.states import TaskState
from service.engine.account_estimate import AccountEstimate
from service.engine.poll_write_back import NotPolled
from service.engine.task_poll import TaskPoll
from service.heartbeat import HeldLease
from service.sim.server import SimServer
from service.store.leased_tasks import LeasedTask
from service.store.leases import LeasedTable
from service.store.poll_results import PollWrite
from service.upstream.client import UpstreamClient
from service.upstream.pause import read_pause
from service.upstream.reaction import UpstreamReaction
from tests.support.settings import engine_settings

pytestmark = pytest.mark.usefixtures("flush_redis")

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEASE_MARGIN = timedelta(seconds=2)


class Poll:
    """A TaskPoll on the simulator, at a clock the test sets."""

    def __init__(self, task_poll: TaskPoll, reaction: UpstreamReaction) -> None:
        self.task_poll = task_poll
        self.reaction = reaction

    async def of(
        self,
        task: LeasedTask,
        *,
        lease_left: timedelta = timedelta(seconds=30),
        probe: bool = False,
    ) -> PollWrite | NotPolled:
        held = HeldLease(LeasedTable.TASKS, uuid.uuid4(), (task.id,), NOW + lease_left)
        return await self.task_poll.poll(task, held, probe=probe)


@pytest.fixture
async def poll(
    fresh_sim: SimServer, database_url: str, redis_url: str, redis_client: Redis[Any]
) -> AsyncIterator[Poll]:
    settings = engine_settings(database_url, redis_url, fresh_sim.base_url)
    upstream = UpstreamClient(settings)
    reaction = UpstreamReaction.from_settings(redis_client, settings)
    task_poll = TaskPoll(
        upstream,
        reaction,
        PollPolicy(settings.poll_backoff),
        AccountEstimate("task-poll-test", settings.poll_estimate_half_life_s),
        lease_margin=LEASE_MARGIN,
        clock=lambda: NOW,
        rand=lambda: 0.5,
    )
    try:
        yield Poll(task_poll, reaction)
    finally:
        await upstream.aclose()


def leased(
    task_id: str, *, expires_in: timedelta = timedelta(hours=1), **fields: Any
) -> LeasedTask:
    return LeasedTask(
        id=1,
        task_id=task_id,
        poll_count=fields.pop("poll_count", 0),
        expires_at=NOW + expires_in,
        lease_until=NOW + timedelta(seconds=30),
        next_poll_at=NOW - timedelta(seconds=1),
        submitted_at=NOW - timedelta(seconds=10),
        **fields,
    )


def calls(sim: SimServer) -> list[str]:
    return [call["task_id"] for call in sim.control.calls(endpoint="task_result")]


async def test_a_due_task_is_called_and_its_answer_kept_with_the_decision(
    poll: Poll, fresh_sim: SimServer
) -> None:
    written = await poll.of(leased("sim-busy-0-taskpoll"))

    assert isinstance(written, PollWrite)
    assert written.decision.kind is DecisionKind.COMPLETE
    assert written.decision.state is TaskState.COMPLETED
    assert written.decision.poll_count == 1
    assert written.decision.result is not None
    assert written.decision.result.phone_status == "busy"
    assert written.polled is not None
    assert (written.polled.code, written.polled.status) == ("OK", 200)
    assert written.polled.request_id is not None
    assert calls(fresh_sim) == ["sim-busy-0-taskpoll"]


async def test_a_pending_answer_is_polled_again_later(poll: Poll, fresh_sim: SimServer) -> None:
    written = await poll.of(leased("sim-ring-3-taskpoll", poll_count=2))

    assert isinstance(written, PollWrite)
    assert written.decision.kind is DecisionKind.RETRY
    assert written.decision.poll_count == 3
    assert written.decision.next_poll_at is not None
    assert written.decision.next_poll_at > NOW
    assert written.decision.last_pending_at == NOW
    assert written.polled is not None
    assert written.polled.code == "PENDING"


async def test_a_task_past_its_deadline_expires_without_a_call(
    poll: Poll, fresh_sim: SimServer
) -> None:
    written = await poll.of(leased("sim-ring-0-late", expires_in=timedelta(0), poll_count=4))

    assert isinstance(written, PollWrite)
    assert written.decision.kind is DecisionKind.EXPIRE
    assert written.decision.poll_count == 4
    assert written.polled is None
    assert calls(fresh_sim) == []


async def test_a_slot_within_the_deadlines_margin_is_handed_back_until_the_deadline(
    poll: Poll, fresh_sim: SimServer
) -> None:
    task = leased("sim-ring-0-close", expires_in=DEADLINE_MARGIN / 2)

    assert await poll.of(task) == NotPolled(task.id, not_before=task.expires_at)
    assert calls(fresh_sim) == []


async def test_a_lease_that_could_end_before_the_answer_is_handed_back(
    poll: Poll, fresh_sim: SimServer
) -> None:
    task = leased("sim-ring-0-lease")

    assert await poll.of(task, lease_left=LEASE_MARGIN) == NotPolled(task.id)
    assert calls(fresh_sim) == []


async def test_while_paused_only_the_probe_calls(poll: Poll, fresh_sim: SimServer) -> None:
    poll.reaction.gate.learn_paused(True)
    task = leased("sim-ring-0-paused")

    assert await poll.of(task) == NotPolled(task.id)
    assert calls(fresh_sim) == []
    probed = await poll.of(task, probe=True)
    assert isinstance(probed, PollWrite)
    assert calls(fresh_sim) == [task.task_id]


async def test_a_retry_after_hands_the_task_back_until_it_ends(
    poll: Poll, fresh_sim: SimServer
) -> None:
    poll.reaction.gate.learn_blocked(30.0)
    task = leased("sim-ring-0-blocked")

    handed_back = await poll.of(task)

    assert isinstance(handed_back, NotPolled)
    assert handed_back.not_before is not None
    assert NOW + timedelta(seconds=29) < handed_back.not_before <= NOW + timedelta(seconds=30)
    assert calls(fresh_sim) == []


async def test_an_account_problem_opens_the_pause_and_fails_no_task(
    poll: Poll, fresh_sim: SimServer, redis_client: Redis[Any]
) -> None:
    fresh_sim.control.force("key_expired", calls=1)

    written = await poll.of(leased("sim-ring-0-refused"))

    assert isinstance(written, PollWrite)
    assert written.decision.kind is DecisionKind.PAUSE
    assert written.decision.state is TaskState.PENDING
    assert written.decision.last_error is not None
    assert written.decision.last_error["code"] == "KEY_EXPIRED"
    pause = await read_pause(redis_client)
    assert pause is not None
    assert pause.reason == "KEY_EXPIRED"
    assert poll.reaction.gate.believes_paused()
