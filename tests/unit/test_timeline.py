"""One task's story as the portal's timeline tells it (service/api/portal/timeline.py): who
submitted it, each kept poll (PENDING is "not ready yet", not a failure), a gap line for polls no
longer kept, the final state with its answer or error, the event and every delivery attempt, in
time order. The page around it is tests/integration/portal/'s."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from service.api.portal.timeline import Moment, task_timeline
from service.domain.states import DeliveryState, EventType, TaskSource, TaskState
from service.features.tasks import POLL_HISTORY_LIMIT, DeliveryView, TaskRow, TaskStory
from service.store.event_deliveries import AttemptView

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def task(**changes: Any) -> TaskRow:
    pending = TaskRow(
        id=7,
        task_id="T-1",
        state=TaskState.PENDING,
        result=None,
        submitted_at=at(0),
        registered_at=at(1),
        expires_at=at(86400),
        completed_at=None,
        next_poll_at=at(5),
        poll_count=0,
        last_error=None,
        upstream_request_id=None,
        metadata={},
        source=TaskSource.REGISTERED,
        phone_number_masked=None,
        rechecks=[],
    )
    return replace(pending, **changes)


def story(
    polls: list[dict[str, Any]], event: tuple[str, EventType, datetime] | None = None
) -> TaskStory:
    event_id, event_type, created = event if event is not None else (None, None, None)
    return TaskStory(7, polls, None if event is None else 3, event_id, event_type, created)


def poll(
    seconds: float, code: str, status: int | None, latency_ms: int | None = 20
) -> dict[str, Any]:
    entry: dict[str, Any] = {"at": at(seconds).isoformat(), "code": code, "status": status}
    entry |= {"request_id": f"TID-{seconds}", "latency_ms": latency_ms}
    return entry


def attempt(seconds: float, status: int | None, error: str | None = None) -> AttemptView:
    return AttemptView(at(seconds), status, 35, error, None)


def delivery(*attempts: AttemptView) -> DeliveryView:
    return DeliveryView(
        id="dlv_1",
        subscription_id="sub_1",
        state=DeliveryState.SUCCEEDED,
        attempt_count=len(attempts),
        last_attempt_at=None,
        next_attempt_at=None,
        last_response_status=None,
        last_error=None,
        attempts=list(attempts),
    )


def kinds(moments: list[Moment]) -> list[str]:
    return [moment.kind for moment in moments]


def test_a_completed_task_reads_in_time_order_from_submit_to_its_last_attempt() -> None:
    done = task(
        state=TaskState.COMPLETED,
        completed_at=at(12),
        poll_count=2,
        result={"phone_status": "ring"},
    )
    polls = [poll(5, "PENDING", 400), poll(11, "OK", 200)]
    sent = delivery(attempt(14, None, "timeout"), attempt(13, 503), attempt(20, 200))

    moments = task_timeline(
        done, story(polls, ("evt_1", EventType.TASK_COMPLETED, at(12.5))), [sent]
    )

    assert kinds(moments) == [
        "submitted", "registered", "poll", "poll", "final", "event",
        "attempt", "attempt", "attempt",
    ]  # fmt: skip
    first_poll, last_poll = moments[2], moments[3]
    assert (first_poll.title, first_poll.detail) == ("poll: PENDING", "not ready yet, 20 ms")
    assert first_poll.request_id == "TID-5"
    assert (last_poll.title, last_poll.detail) == ("poll: OK", "HTTP 200, 20 ms")
    assert (moments[4].title, moments[4].detail) == ("completed", "phone_status ring, verdict live")
    assert (moments[5].title, moments[5].detail) == ("event task.completed", "evt_1")
    assert [moment.ok for moment in moments[6:]] == [False, False, True]
    assert moments[6].detail == "to sub_1: 503, 35 ms"
    assert moments[7].detail == "to sub_1: no answer, 35 ms (timeout)"


def test_who_submitted_the_check_is_told() -> None:
    registered = task_timeline(task(), story([]), [])
    submitted = task_timeline(
        task(source=TaskSource.SUBMITTED, phone_number_masked="+52*******1234"), story([]), []
    )
    unkept = task_timeline(task(source=TaskSource.SUBMITTED), story([]), [])

    assert registered[0].detail == "by the client, who registered its task_id"
    assert submitted[0].detail == "by phonebridge, number +52*******1234"
    assert unkept[0].detail == "by phonebridge, number (not kept)"


def test_polls_no_longer_kept_are_one_gap_line_before_the_kept_ones() -> None:
    kept = [poll(100 + i, "PENDING", 400) for i in range(POLL_HISTORY_LIMIT)]

    moments = task_timeline(task(poll_count=POLL_HISTORY_LIMIT + 3), story(kept), [])

    gap = moments[2]
    assert gap.kind == "gap"
    assert gap.title == "3 earlier polls not kept"
    assert gap.at == at(100)
    assert str(POLL_HISTORY_LIMIT) in gap.detail
    assert kinds(moments[3:]) == ["poll"] * POLL_HISTORY_LIMIT


def test_one_poll_not_kept_is_named_in_the_singular() -> None:
    moments = task_timeline(task(poll_count=1), story([]), [])

    gaps = [moment for moment in moments if moment.kind == "gap"]
    assert [(gap.title, gap.at) for gap in gaps] == [("1 earlier poll not kept", None)]
    # A moment without a time goes last.
    assert moments[-1].kind == "gap"


def test_a_failed_task_shows_its_error_and_a_call_without_an_answer_says_so() -> None:
    failed = task(
        state=TaskState.FAILED,
        completed_at=at(9),
        poll_count=2,
        last_error={"code": "INVALID_ARGUMENT", "message": "task not found"},
    )
    polls = [poll(4, "TIMEOUT", None, latency_ms=None), poll(8, "INVALID_ARGUMENT", 400)]

    moments = task_timeline(failed, story(polls), [])

    assert [moment.detail for moment in moments if moment.kind == "poll"] == [
        "no HTTP answer",
        "HTTP 400, 20 ms",
    ]
    final = moments[-1]
    assert (final.kind, final.title, final.detail) == (
        "final",
        "failed",
        "INVALID_ARGUMENT: task not found",
    )


def test_a_pending_task_has_no_final_line_and_no_event() -> None:
    moments = task_timeline(task(poll_count=1), story([poll(5, "PENDING", 400)]), [])

    assert kinds(moments) == ["submitted", "registered", "poll"]
