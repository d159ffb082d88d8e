"""A check job's life (service.domain.job_lifecycle): every move from every status, written out
as the table it is, and when `job.completed` is due."""

from __future__ import annotations

import itertools

import pytest

from service.domain.job_lifecycle import (
    CLIENT_MOVES,
    JobMove,
    JobStatus,
    MoveRefused,
    completed_event_due,
    initial_status,
    move_job,
    submits_allowed,
)
from service.domain.states import JobState, PausedReason

DRAFT = JobStatus(JobState.DRAFT)
QUEUED = JobStatus(JobState.QUEUED)
RUNNING = JobStatus(JobState.RUNNING)
BY_CLIENT = JobStatus(JobState.PAUSED, PausedReason.CLIENT)
BY_BUDGET = JobStatus(JobState.PAUSED, PausedReason.BUDGET)
BY_UPSTREAM = JobStatus(JobState.PAUSED, PausedReason.UPSTREAM)
COMPLETED = JobStatus(JobState.COMPLETED)
CANCELLED = JobStatus(JobState.CANCELLED)
STATUSES = (DRAFT, QUEUED, RUNNING, BY_CLIENT, BY_BUDGET, BY_UPSTREAM, COMPLETED, CANCELLED)
REFUSED = "409"

M = JobMove
# Rows: the status a move starts from; columns: the move. REFUSED: 409 (client moves only).
TABLE: dict[JobStatus, dict[JobMove, JobStatus | str]] = {
    DRAFT: {
        M.START: QUEUED,
        M.PAUSE: REFUSED,
        M.RESUME: REFUSED,
        M.CANCEL: CANCELLED,
        M.BEGIN: DRAFT,
        M.BUDGET_EXHAUSTED: DRAFT,
        M.BUDGET_RESTORED: DRAFT,
        M.UPSTREAM_PAUSED: DRAFT,
        M.UPSTREAM_RESUMED: DRAFT,
        M.ALL_FINAL: DRAFT,
    },
    QUEUED: {
        M.START: REFUSED,
        M.PAUSE: BY_CLIENT,
        M.RESUME: REFUSED,
        M.CANCEL: CANCELLED,
        M.BEGIN: RUNNING,
        M.BUDGET_EXHAUSTED: BY_BUDGET,
        M.BUDGET_RESTORED: QUEUED,
        M.UPSTREAM_PAUSED: BY_UPSTREAM,
        M.UPSTREAM_RESUMED: QUEUED,
        M.ALL_FINAL: COMPLETED,
    },
    RUNNING: {
        M.START: REFUSED,
        M.PAUSE: BY_CLIENT,
        M.RESUME: REFUSED,
        M.CANCEL: CANCELLED,
        M.BEGIN: RUNNING,
        M.BUDGET_EXHAUSTED: BY_BUDGET,
        M.BUDGET_RESTORED: RUNNING,
        M.UPSTREAM_PAUSED: BY_UPSTREAM,
        M.UPSTREAM_RESUMED: RUNNING,
        M.ALL_FINAL: COMPLETED,
    },
    BY_CLIENT: {
        M.START: REFUSED,
        M.PAUSE: REFUSED,
        M.RESUME: RUNNING,
        M.CANCEL: CANCELLED,
        M.BEGIN: BY_CLIENT,
        M.BUDGET_EXHAUSTED: BY_CLIENT,
        M.BUDGET_RESTORED: BY_CLIENT,
        M.UPSTREAM_PAUSED: BY_CLIENT,
        M.UPSTREAM_RESUMED: BY_CLIENT,
        M.ALL_FINAL: COMPLETED,
    },
    BY_BUDGET: {
        M.START: REFUSED,
        M.PAUSE: BY_CLIENT,
        M.RESUME: REFUSED,
        M.CANCEL: CANCELLED,
        M.BEGIN: BY_BUDGET,
        M.BUDGET_EXHAUSTED: BY_BUDGET,
        M.BUDGET_RESTORED: RUNNING,
        M.UPSTREAM_PAUSED: BY_BUDGET,
        M.UPSTREAM_RESUMED: BY_BUDGET,
        M.ALL_FINAL: COMPLETED,
    },
    BY_UPSTREAM: {
        M.START: REFUSED,
        M.PAUSE: BY_CLIENT,
        M.RESUME: REFUSED,
        M.CANCEL: CANCELLED,
        M.BEGIN: BY_UPSTREAM,
        M.BUDGET_EXHAUSTED: BY_UPSTREAM,
        M.BUDGET_RESTORED: BY_UPSTREAM,
        M.UPSTREAM_PAUSED: BY_UPSTREAM,
        M.UPSTREAM_RESUMED: RUNNING,
        M.ALL_FINAL: COMPLETED,
    },
    COMPLETED: {move: (REFUSED if move in CLIENT_MOVES else COMPLETED) for move in JobMove},
    CANCELLED: {move: (REFUSED if move in CLIENT_MOVES else CANCELLED) for move in JobMove},
}


def test_the_table_covers_every_status_and_every_move() -> None:
    assert set(TABLE) == set(STATUSES)
    assert all(set(row) == set(JobMove) for row in TABLE.values())
    assert len(STATUSES) == len(JobState) + len(PausedReason) - 1


@pytest.mark.parametrize(
    ("status", "move"),
    list(itertools.product(STATUSES, JobMove)),
    ids=lambda value: str(getattr(value, "paused_reason", None) or getattr(value, "state", value)),
)
def test_every_move_from_every_status_is_as_the_table_says(
    status: JobStatus, move: JobMove
) -> None:
    expected = TABLE[status][move]
    outcome = move_job(status, move)
    if expected == REFUSED:
        assert isinstance(outcome, MoveRefused)
        assert outcome.move is move
        assert outcome.reason
    else:
        assert outcome == expected


@pytest.mark.parametrize(("status", "move"), list(itertools.product(STATUSES, JobMove)))
def test_only_a_clients_move_is_ever_refused(status: JobStatus, move: JobMove) -> None:
    if not move.by_client:
        assert isinstance(move_job(status, move), JobStatus)


@pytest.mark.parametrize("move", sorted(set(JobMove) - CLIENT_MOVES))
@pytest.mark.parametrize("status", [COMPLETED, CANCELLED])
def test_nothing_moves_a_finished_job(status: JobStatus, move: JobMove) -> None:
    assert move_job(status, move) == status


@pytest.mark.parametrize(
    ("status", "move", "reason"),
    [
        (RUNNING, M.START, "the job has already started (it is running)"),
        (QUEUED, M.START, "the job has already started (it is queued)"),
        (BY_CLIENT, M.START, "the job has started and is paused; resume it instead"),
        (CANCELLED, M.CANCEL, "the job is cancelled; nothing can move it any more"),
        (COMPLETED, M.PAUSE, "the job is completed; nothing can move it any more"),
        (DRAFT, M.PAUSE, "the job has not started: a draft has nothing to pause"),
        (BY_CLIENT, M.PAUSE, "the job is already paused"),
        (DRAFT, M.RESUME, "the job has not started: start it instead"),
        (RUNNING, M.RESUME, "the job is not paused (it is running)"),
    ],
)
def test_a_refusal_names_its_reason(status: JobStatus, move: JobMove, reason: str) -> None:
    assert move_job(status, move) == MoveRefused(move, reason)


def test_a_resume_of_a_job_the_budget_paused_says_it_resumes_by_itself_after_midnight() -> None:
    outcome = move_job(BY_BUDGET, M.RESUME)
    assert isinstance(outcome, MoveRefused)
    assert "budget" in outcome.reason
    assert "resumes by itself" in outcome.reason
    assert "midnight UTC" in outcome.reason


def test_a_resume_of_a_job_upstream_paused_says_it_resumes_by_itself() -> None:
    outcome = move_job(BY_UPSTREAM, M.RESUME)
    assert isinstance(outcome, MoveRefused)
    assert "upstream" in outcome.reason
    assert "resumes by itself" in outcome.reason


def test_a_start_on_a_running_job_and_a_second_cancel_are_409() -> None:
    # The bad-input list.
    assert isinstance(move_job(RUNNING, M.START), MoveRefused)
    cancelled = move_job(RUNNING, M.CANCEL)
    assert cancelled == CANCELLED
    assert isinstance(move_job(CANCELLED, M.CANCEL), MoveRefused)


def test_a_clients_pause_holds_when_the_system_would_resume_it() -> None:
    paused = move_job(BY_BUDGET, M.PAUSE)
    assert paused == BY_CLIENT
    assert move_job(BY_CLIENT, M.BUDGET_RESTORED) == BY_CLIENT
    assert move_job(BY_CLIENT, M.RESUME) == RUNNING


def test_a_job_created_to_start_is_queued_else_a_draft() -> None:
    assert initial_status(start=True) == QUEUED
    assert initial_status(start=False) == DRAFT


@pytest.mark.parametrize("status", STATUSES)
def test_items_are_submitted_only_from_a_queued_or_running_job(status: JobStatus) -> None:
    assert submits_allowed(status) == (status in (QUEUED, RUNNING))


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("pending", [0, 1, 7])
def test_job_completed_is_due_when_completed_or_cancelled_with_nothing_pending(
    status: JobStatus, pending: int
) -> None:
    expected = status == COMPLETED or (status == CANCELLED and pending == 0)
    assert completed_event_due(status, pending=pending) == expected


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (JobState.PAUSED, None),
        *(
            (state, reason)
            for state in JobState
            if state is not JobState.PAUSED
            for reason in PausedReason
        ),
    ],
)
def test_a_paused_reason_exactly_when_paused(state: JobState, reason: PausedReason | None) -> None:
    with pytest.raises(ValueError, match="paused_reason"):
        JobStatus(state, reason)


def test_only_completed_and_cancelled_are_final() -> None:
    assert {state for state in JobState if state.is_final} == {
        JobState.COMPLETED,
        JobState.CANCELLED,
    }


def test_the_states_and_reasons_are_the_contracts_words() -> None:
    assert [state.value for state in JobState] == [
        "draft",
        "queued",
        "running",
        "paused",
        "completed",
        "cancelled",
    ]
    assert [reason.value for reason in PausedReason] == ["client", "budget", "upstream"]
