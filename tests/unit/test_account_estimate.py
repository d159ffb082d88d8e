"""What a polled batch's write-back adds to the completion-time estimates
(service/engine/account_estimate.py, `completion_increments`): one unit of weight per task the
batch completed, in its client's row and in the account's, spread by the estimate the batch was
scheduled with; nothing for a failure, an expiry or a task whose lease was lost. Reading and
adding in PostgreSQL is tests/integration/engine/test_account_estimate.py's."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from service.domain.completion import (
    BIN_COUNT,
    EDGES,
    CompletionEstimate,
    Observation,
    apportion,
    not_answered_by,
)
from service.domain.polling import DecisionKind, PollDecision
from service.domain.states import TaskState
from service.engine.account_estimate import completion_increments
from service.store.estimates import ACCOUNT_WIDE
from service.store.poll_results import PollWrite, WrittenTask

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FIRST, SECOND = 11, 12  # two clients


def completed(id_: int, seen: Observation | None) -> PollWrite:
    decision = PollDecision(
        DecisionKind.COMPLETE, TaskState.COMPLETED, 2, None, completed_at=NOW, observation=seen
    )
    return PollWrite(id_, decision)


def failed(id_: int) -> PollWrite:
    return PollWrite(id_, PollDecision(DecisionKind.FAIL, TaskState.FAILED, 1, None, NOW))


def written(id_: int, client: int, state: TaskState = TaskState.COMPLETED) -> WrittenTask:
    # A write brings an answer when it writes a result: a completion (or one a re-check follows).
    answered = state is TaskState.COMPLETED
    return WrittenTask(id_, f"task-{id_}", state, client, answered=answered)


def test_each_completion_adds_one_unit_to_its_client_and_to_the_account() -> None:
    writes = [completed(1, Observation(2, 9)), completed(2, Observation(30, 40))]
    writes.append(completed(3, Observation(0, 5)))
    done = [written(1, FIRST), written(2, FIRST), written(3, SECOND)]

    increments = completion_increments(None, writes, done)

    assert set(increments) == {ACCOUNT_WIDE, FIRST, SECOND}
    assert math.fsum(increments[FIRST]) == pytest.approx(2.0)
    assert math.fsum(increments[SECOND]) == pytest.approx(1.0)
    account = [a + b for a, b in zip(increments[FIRST], increments[SECOND], strict=True)]
    assert increments[ACCOUNT_WIDE] == pytest.approx(tuple(account))


def test_the_weight_is_spread_by_the_estimate_the_batch_was_scheduled_with() -> None:
    seen = Observation(1.0, 100.0)
    # Nearly all that is known completed in one bin inside the interval.
    heavy = next(index for index, edge in enumerate(EDGES) if edge > 10.0)
    weights = [0.0] * BIN_COUNT
    weights[heavy] = 500.0
    warm = CompletionEstimate(tuple(weights))

    cold = completion_increments(None, [completed(1, seen)], [written(1, FIRST)])
    learnt = completion_increments(warm, [completed(1, seen)], [written(1, FIRST)])

    assert cold[FIRST] == pytest.approx(apportion(CompletionEstimate.empty(), [seen]))
    assert learnt[FIRST] == pytest.approx(apportion(warm, [seen]))
    assert learnt[FIRST][heavy] > 0.9
    assert cold[FIRST][heavy] < 0.5


def test_failures_expiries_and_lost_leases_teach_nothing() -> None:
    writes = [completed(1, Observation(1, 2)), failed(2), completed(3, Observation(1, 2))]
    # Task 1's lease was lost (not written); 2 failed; 3 was written as expired.
    done = [written(2, FIRST, TaskState.FAILED), written(3, FIRST, TaskState.EXPIRED)]

    assert completion_increments(None, writes, done) == {}


def test_a_task_that_will_expire_unanswered_adds_its_censored_unit() -> None:
    """Its last call's decision says the answer had not come by its age: one unit of weight past
    that age, in its client's row and the account's, though the write brought no answer."""
    censored = not_answered_by(0.0, EDGES[30])
    last_call = PollDecision(DecisionKind.RETRY, TaskState.PENDING, 4, NOW, observation=censored)
    increments = completion_increments(
        None, [PollWrite(1, last_call)], [written(1, FIRST, TaskState.PENDING)]
    )
    assert set(increments) == {ACCOUNT_WIDE, FIRST}
    assert math.fsum(increments[FIRST]) == pytest.approx(1.0)
    assert math.fsum(increments[FIRST][:30]) == 0.0


def test_a_completion_without_an_observation_teaches_nothing() -> None:
    increments = completion_increments(
        None,
        [completed(1, None), completed(2, Observation(3, 4))],
        [written(1, FIRST), written(2, SECOND)],
    )

    assert set(increments) == {ACCOUNT_WIDE, SECOND}
