"""A check job's life: which moves take it from which state to which, and when its one
`job.completed` event is due.

Pure: `move_job(status, move)` gives the new status, or for a client's move that its state does
not allow, `MoveRefused` with the reason (the API's 409). Every surface (REST, the portal, the
CLI through REST) and the engine move jobs through it, and the store writes the result guarded by
the status it read, so two moves at once cannot both apply.

The client's moves (refused, 409, where they make no sense):
- `start`: draft -> queued. Only a draft starts; a job created with `start` true begins queued
  (`initial_status`).
- `pause`: queued or running -> paused (client). A job paused by the system (budget, upstream)
  may be paused by its client too: it then stays paused when the system would resume it.
- `resume`: paused (client) -> running. A job paused by the system resumes by itself; its
  client's `resume` is refused with the reason and what it waits for.
- `cancel`: any state but completed or cancelled -> cancelled. Nothing not yet submitted is ever
  submitted; what was submitted finishes and is reported.

The system's moves never fail: one that does not apply to the job's state leaves it unchanged
(the engine's view may be a moment old: a budget coming back to a job its client cancelled
meanwhile changes nothing).
- `begin` (its first items taken for submission): queued -> running.
- `budget_exhausted` / `upstream_paused`: queued or running -> paused (budget / upstream). A job
  already paused keeps its reason: a client's pause is never overridden, and of two system
  pauses the first holds until it lifts (the engine sees the other at its next claim).
- `budget_restored` / `upstream_resumed`: paused (budget / upstream) -> running.
- `all_final` (every item has its final answer): queued, running or paused -> completed. A
  draft stays a draft: it is completed only once started, when nothing is left to submit.

`started_at` is set by `start` (or at creation with `start` true); `finished_at` when the job
enters a final state (`JobState.is_final`). `job.completed` is due (`completed_event_due`) when
the job is completed, or, cancelled, once the items it had submitted have their final answers
(at once when none is pending); the store makes it once per job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.domain.states import JobState, PausedReason


class JobMove(StrEnum):
    # The client's.
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    # The system's.
    BEGIN = "begin"
    BUDGET_EXHAUSTED = "budget_exhausted"
    BUDGET_RESTORED = "budget_restored"
    UPSTREAM_PAUSED = "upstream_paused"
    UPSTREAM_RESUMED = "upstream_resumed"
    ALL_FINAL = "all_final"

    @property
    def by_client(self) -> bool:
        return self in CLIENT_MOVES


CLIENT_MOVES = frozenset({JobMove.START, JobMove.PAUSE, JobMove.RESUME, JobMove.CANCEL})


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's state and, exactly when it is paused, why."""

    state: JobState
    paused_reason: PausedReason | None = None

    def __post_init__(self) -> None:
        if (self.state is JobState.PAUSED) != (self.paused_reason is not None):
            raise ValueError(f"a {self.state} job with paused_reason {self.paused_reason}")


@dataclass(frozen=True, slots=True)
class MoveRefused:
    """A client's move its job's state does not allow: 409, with the reason."""

    move: JobMove
    reason: str


DRAFT = JobStatus(JobState.DRAFT)
QUEUED = JobStatus(JobState.QUEUED)
RUNNING = JobStatus(JobState.RUNNING)
COMPLETED = JobStatus(JobState.COMPLETED)
CANCELLED = JobStatus(JobState.CANCELLED)

_SYSTEM_PAUSES = {
    JobMove.BUDGET_EXHAUSTED: PausedReason.BUDGET,
    JobMove.UPSTREAM_PAUSED: PausedReason.UPSTREAM,
}
_SYSTEM_RESUMES = {
    JobMove.BUDGET_RESTORED: PausedReason.BUDGET,
    JobMove.UPSTREAM_RESUMED: PausedReason.UPSTREAM,
}
_ACTIVE = (JobState.QUEUED, JobState.RUNNING)
_WAITS_FOR = {
    PausedReason.BUDGET: "this client's daily check budget is spent; it resumes by itself when "
    "the budget allows (after midnight UTC)",
    PausedReason.UPSTREAM: "upstream paused every check (an account problem); it resumes by "
    "itself when upstream answers again",
}


def initial_status(*, start: bool) -> JobStatus:
    """A new job's status: queued when created with `start` true, else a draft."""
    return QUEUED if start else DRAFT


def submits_allowed(status: JobStatus) -> bool:
    """Whether the engine may take this job's items for submission."""
    return status.state in _ACTIVE


def completed_event_due(status: JobStatus, *, pending: int) -> bool:
    """Whether the job's `job.completed` event is due, given how many of its submitted items
    are still pending."""
    if status.state is JobState.COMPLETED:
        return True
    return status.state is JobState.CANCELLED and pending == 0


def move_job(status: JobStatus, move: JobMove) -> JobStatus | MoveRefused:
    """The status after `move`; only a client's move is ever refused."""
    if move.by_client:
        return _client_move(status, move)
    return _system_move(status, move)


def _client_move(status: JobStatus, move: JobMove) -> JobStatus | MoveRefused:
    state = status.state
    if state.is_final:
        return MoveRefused(move, f"the job is {state}; nothing can move it any more")
    if move is JobMove.CANCEL:
        return CANCELLED
    if move is JobMove.START:
        if state is JobState.DRAFT:
            return QUEUED
        if state is JobState.PAUSED:
            return MoveRefused(move, "the job has started and is paused; resume it instead")
        return MoveRefused(move, f"the job has already started (it is {state})")
    if move is JobMove.PAUSE:
        if state is JobState.DRAFT:
            return MoveRefused(move, "the job has not started: a draft has nothing to pause")
        if status.paused_reason is PausedReason.CLIENT:
            return MoveRefused(move, "the job is already paused")
        return JobStatus(JobState.PAUSED, PausedReason.CLIENT)
    # JobMove.RESUME
    if state is JobState.DRAFT:
        return MoveRefused(move, "the job has not started: start it instead")
    if status.paused_reason is None:
        return MoveRefused(move, f"the job is not paused (it is {state})")
    if status.paused_reason is not PausedReason.CLIENT:
        return MoveRefused(
            move, "the job was paused by phonebridge: " + _WAITS_FOR[status.paused_reason]
        )
    return RUNNING


def _system_move(status: JobStatus, move: JobMove) -> JobStatus:
    state = status.state
    if move is JobMove.BEGIN:
        return RUNNING if state is JobState.QUEUED else status
    if move in _SYSTEM_PAUSES:
        return JobStatus(JobState.PAUSED, _SYSTEM_PAUSES[move]) if state in _ACTIVE else status
    if move in _SYSTEM_RESUMES:
        return RUNNING if status.paused_reason is _SYSTEM_RESUMES[move] else status
    # JobMove.ALL_FINAL
    if state in (*_ACTIVE, JobState.PAUSED):
        return COMPLETED
    return status
