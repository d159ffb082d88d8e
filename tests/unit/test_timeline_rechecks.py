"""A task's story as the portal's timeline tells it (service/api/portal/timeline.py): with
re-checks, every answer shows, each re-check's submit, and the final state after the last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from service.api.portal.timeline import Moment, task_timeline
from service.domain.states import TaskSource, TaskState
from service.features.tasks import TaskRow, TaskStory

T0 = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def task(state: TaskState, result: str | None, rechecks: list[dict[str, Any]]) -> TaskRow:
    return TaskRow(
        id=1,
        task_id="T-1",
        state=state,
        result=None if result is None else {"phone_number": "5255****", "phone_status": result},
        submitted_at=T0,
        registered_at=T0,
        expires_at=at(86_400),
        completed_at=at(700) if state.is_final else None,
        next_poll_at=None,
        poll_count=2,
        last_error=None,
        upstream_request_id=None,
        metadata={},
        source=TaskSource.SUBMITTED,
        phone_number_masked="52******1234",
        rechecks=rechecks,
    )


def story(history: list[dict[str, Any]]) -> TaskStory:
    return TaskStory(1, history, None, None, None, None)


def poll(seconds: float, code: str) -> dict[str, Any]:
    status = 200 if code == "OK" else 400
    return {"at": at(seconds).isoformat(), "code": code, "status": status, "latency_ms": 5}


HISTORY = [
    poll(2, "OK"),
    {"at": at(62).isoformat(), "call": "submit", "code": "PENDING", "task_id": "T-2"},
    poll(64, "OK"),
]


def kinds(moments: list[Moment]) -> list[tuple[str, str]]:
    return [(moment.kind, moment.title) for moment in moments]


def test_a_rechecked_task_shows_every_answer_each_resubmit_and_then_its_end() -> None:
    earlier = {"task_id": "T-1", "phone_status": "temp_unavailable", "at": at(2).isoformat()}
    moments = task_timeline(
        task(TaskState.COMPLETED, "ring", [earlier]), story(HISTORY), deliveries=[]
    )

    assert kinds(moments)[2:] == [
        ("poll", "poll: OK"),
        ("answer", "answer: temp_unavailable"),
        ("resubmitted", "re-check submitted: PENDING"),
        ("poll", "poll: OK"),
        ("final", "completed"),
    ]
    assert "T-2" in moments[4].detail
    assert moments[-1].detail == "phone_status ring, verdict live"
    # Only polls count as polls: no gap for the re-check's submit.
    assert "gap" not in {moment.kind for moment in moments}


def test_a_task_waiting_for_its_recheck_shows_its_answer_and_that_one_follows() -> None:
    moments = task_timeline(
        task(TaskState.PENDING, "line_abnormal", []), story([poll(2, "OK")]), deliveries=[]
    )
    assert moments[-1] == Moment(
        None, "answer", "answer: line_abnormal", "a re-check will follow (recheck)"
    )
