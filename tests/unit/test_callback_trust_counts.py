"""What a poll write-back counts for callback trust (service/engine/callback_trust.py): per
client, its callback-carrying checks that got their answer (completed, or answered and waiting for
a re-check) with their callback (heard) or without it (missed); nothing else counts."""

from __future__ import annotations

from service.domain.states import TaskState
from service.engine.callback_trust import callback_counts
from service.store.callback_trust import CallbackCount
from service.store.poll_results import WrittenTask


def written(
    client_id: int,
    state: TaskState,
    *,
    expects: bool,
    hinted: bool,
    answered: bool | None = None,
) -> WrittenTask:
    return WrittenTask(
        id=client_id * 100,
        task_id=f"T-{client_id}",
        state=state,
        client_id=client_id,
        expects_callback=expects,
        hinted=hinted,
        answered=state is TaskState.COMPLETED if answered is None else answered,
    )


def test_completed_checks_count_as_heard_or_missed_per_client() -> None:
    counts = callback_counts(
        [
            written(1, TaskState.COMPLETED, expects=True, hinted=True),
            written(1, TaskState.COMPLETED, expects=True, hinted=False),
            written(1, TaskState.COMPLETED, expects=True, hinted=True),
            written(2, TaskState.COMPLETED, expects=True, hinted=False),
        ]
    )

    assert counts == {1: CallbackCount(heard=2, missed=1), 2: CallbackCount(heard=0, missed=1)}


def test_checks_without_a_callback_and_unfinished_ones_count_for_nothing() -> None:
    counts = callback_counts(
        [
            written(1, TaskState.COMPLETED, expects=False, hinted=False),
            written(1, TaskState.PENDING, expects=True, hinted=False),
            written(1, TaskState.FAILED, expects=True, hinted=False),
        ]
    )

    assert counts == {}


def test_an_answer_that_waits_for_a_re_check_counts_like_a_completion() -> None:
    counts = callback_counts(
        [written(1, TaskState.PENDING, expects=True, hinted=True, answered=True)]
    )

    assert counts == {1: CallbackCount(heard=1, missed=0)}
