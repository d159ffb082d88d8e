"""One task's story as the timeline page tells it: registration, each kept poll with its answer,
each answer a re-check followed and each re-check's submit, the final state, its event and every
delivery attempt, in time order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain.answers import PENDING_CODE
from service.domain.states import TaskSource
from service.features.tasks import POLL_HISTORY_LIMIT, DeliveryView, TaskRow, TaskStory


@dataclass(frozen=True, slots=True)
class Moment:
    """One line of the timeline. `kind` picks its look: registered, submitted, poll, answer
    (an earlier answer, re-checked), resubmitted, final, event, attempt, gap."""

    at: datetime | None
    kind: str
    title: str
    detail: str = ""
    request_id: str | None = None
    ok: bool | None = None


def task_timeline(task: TaskRow, story: TaskStory, deliveries: list[DeliveryView]) -> list[Moment]:
    moments = [
        Moment(task.submitted_at, "submitted", "submitted upstream", _submitted_by(task)),
        Moment(task.registered_at, "registered", "registered with phonebridge"),
    ]
    calls = [_call(entry) for entry in story.poll_history]
    # The history keeps a re-check's submits beside the polls; poll_count counts polls only.
    dropped = task.poll_count - sum(1 for call in calls if call.kind == "poll")
    if dropped > 0:
        moments.append(
            Moment(
                calls[0].at if calls else None,
                "gap",
                f"{dropped} earlier poll{'s' if dropped != 1 else ''} not kept",
                f"each task keeps its last {POLL_HISTORY_LIMIT} polls",
            )
        )
    moments.extend(calls)
    moments.extend(_earlier_answer(entry) for entry in task.rechecks)
    if task.completed_at is None and task.result is not None:
        moments.append(
            Moment(
                None,
                "answer",
                f"answer: {task.result.get('phone_status', '?')}",
                "a re-check will follow (recheck)",
            )
        )
    if task.completed_at is not None:
        detail = ""
        if task.result is not None:
            verdict = "no verdict" if task.verdict is None else f"verdict {task.verdict}"
            detail = f"phone_status {task.result.get('phone_status', '?')}, {verdict}"
        elif task.last_error is not None:
            detail = f"{task.last_error.get('code', '')}: {task.last_error.get('message', '')}"
        moments.append(Moment(task.completed_at, "final", task.state.value, detail))
    if story.event_id is not None and story.event_created_at is not None:
        moments.append(
            Moment(story.event_created_at, "event", f"event {story.event_type}", story.event_id)
        )
    for delivery in deliveries:
        for attempt in delivery.attempts:
            ok = attempt.response_status is not None and 200 <= attempt.response_status < 300
            status = attempt.response_status if attempt.response_status is not None else "no answer"
            detail = f"to {delivery.subscription_id}: {status}, {attempt.latency_ms} ms"
            if attempt.error:
                detail += f" ({attempt.error})"
            moments.append(Moment(attempt.at, "attempt", "delivery attempt", detail, ok=ok))
    return sorted(moments, key=_order)


def _submitted_by(task: TaskRow) -> str:
    if task.source is TaskSource.SUBMITTED:
        return f"by phonebridge, number {task.phone_number_masked or '(not kept)'}"
    return "by the client, who registered its task_id"


def _earlier_answer(entry: dict[str, Any]) -> Moment:
    return Moment(
        datetime.fromisoformat(str(entry["at"])),
        "answer",
        f"answer: {entry.get('phone_status', '?')}",
        f"from upstream task {entry.get('task_id', '?')}; checked again (recheck)",
    )


def _call(entry: dict[str, Any]) -> Moment:
    """A kept upstream call: a poll, or a re-check's submit."""
    if entry.get("call") == "submit":
        upstream_task = entry.get("task_id")
        detail = f"upstream task {upstream_task}" if upstream_task else ""
        return Moment(
            datetime.fromisoformat(str(entry["at"])),
            "resubmitted",
            f"re-check submitted: {entry.get('code', '?')}",
            detail,
            entry.get("request_id"),
        )
    return _poll(entry)


def _poll(entry: dict[str, Any]) -> Moment:
    at = datetime.fromisoformat(str(entry["at"]))
    status = entry.get("status")
    if entry.get("code") == PENDING_CODE:
        # Upstream says "not ready yet" with an HTTP 400: the normal answer, not a failure.
        detail = "not ready yet"
    else:
        detail = f"HTTP {status}" if status is not None else "no HTTP answer"
    if entry.get("latency_ms") is not None:
        detail += f", {entry['latency_ms']} ms"
    return Moment(at, "poll", f"poll: {entry.get('code', '?')}", detail, entry.get("request_id"))


def _order(moment: Moment) -> tuple[int, datetime]:
    return (0, moment.at) if moment.at is not None else (1, datetime.max)
