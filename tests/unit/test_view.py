"""The demo's view (service/run/view.py): done only when every sample ended as its script says
with a verified webhook, and one plain line per change; the sample job's line."""

from __future__ import annotations

import io
from typing import Any

from service.domain.states import TaskState
from service.run.receiver import ReceivedWebhook
from service.run.view import JobView, PlainView, SampleTask, Snapshot, TaskView

RING = SampleTask("T-ring", TaskState.COMPLETED, "ring")
GONE = SampleTask("T-gone", TaskState.FAILED)


def task(state: TaskState, phone_status: str | None = None, polls: int = 1) -> TaskView:
    return TaskView(state=state, phone_status=phone_status, poll_count=polls, error_code=None)


def webhook(task_id: str, *, verified: bool = True) -> ReceivedWebhook:
    return ReceivedWebhook(
        webhook_id=f"evt_{task_id}",
        event_type="task.completed",
        task_id=task_id,
        state="completed",
        phone_status="ring",
        verified=verified,
        duplicate=False,
        path="/",
        at=0.0,
    )


def snapshot(tasks: dict[str, TaskView], webhooks: list[ReceivedWebhook]) -> Snapshot:
    return Snapshot(samples=[RING, GONE], tasks=tasks, webhooks=webhooks, elapsed_s=1.0)


def test_the_demo_is_done_when_every_sample_ended_as_expected_with_a_verified_webhook() -> None:
    finished = {"T-ring": task(TaskState.COMPLETED, "ring"), "T-gone": task(TaskState.FAILED)}

    assert snapshot(finished, [webhook("T-ring"), webhook("T-gone")]).all_done
    assert not snapshot(finished, [webhook("T-ring"), webhook("T-gone", verified=False)]).all_done
    assert not snapshot(finished, [webhook("T-ring")]).all_done


def test_a_sample_that_ended_otherwise_is_named() -> None:
    ended = snapshot(
        {"T-ring": task(TaskState.COMPLETED, "busy"), "T-gone": task(TaskState.PENDING)}, []
    )

    assert ended.unexpected() == ["T-ring ended completed (busy), expected completed (ring)"]
    assert ended.final_count == 1
    assert not ended.all_done


def test_the_plain_view_says_each_change_once() -> None:
    out = io.StringIO()
    view = PlainView(out)

    view.show(snapshot({"T-ring": task(TaskState.PENDING)}, []))
    view.show(snapshot({"T-ring": task(TaskState.PENDING)}, []))
    view.show(snapshot({"T-ring": task(TaskState.COMPLETED, "ring", polls=3)}, [webhook("T-ring")]))

    assert out.getvalue().splitlines() == [
        "task T-ring: pending (expect completed (ring))",
        "task T-ring: pending -> completed (ring) after 3 poll(s)",
        "webhook evt_T-ring task.completed T-ring: signature verified",
    ]


# --- the sample check job's line -------------------------------------------------------------

EXPECTED = {"live": 2}


def a_job(state: str = "running", completed: int = 1, pending: int = 1) -> dict[str, Any]:
    return {
        "id": "job_1",
        "state": state,
        "counts": {
            "items": 4,
            "rejected": 1,
            "duplicates": 1,
            "cached": 0,
            "to_submit": 2,
            "submitted": completed + pending,
            "pending": pending,
            "completed": completed,
            "failed": 0,
            "expired": 0,
            "by_verdict": {"live": completed + (1 if completed else 0)},
        },
    }


def job_webhook(webhook_id: str, event_type: str = "task.completed") -> ReceivedWebhook:
    return ReceivedWebhook(
        webhook_id=webhook_id,
        event_type=event_type,
        task_id=None if event_type == "job.completed" else f"T-{webhook_id}",
        state="completed",
        phone_status=None,
        verified=True,
        duplicate=False,
        path="/",
        at=0.0,
        job_id="job_1",
    )


def with_job(job: JobView, webhooks: list[ReceivedWebhook]) -> Snapshot:
    return Snapshot(samples=[RING], tasks={}, webhooks=webhooks, elapsed_s=1.0, job=job)


def test_the_job_line_shows_its_progress_and_counts_its_items_webhooks() -> None:
    running = with_job(JobView.of(a_job(), EXPECTED), [job_webhook("a"), job_webhook("a")])
    assert running.job_line() == (
        "sample job job_1 running: submitted 2/2, completed 1, failed 0, expired 0; "
        "cached 0, duplicates 1, rejected 1; 1 item webhook(s) verified"
    )
    assert not running.job_settled


def test_the_job_is_settled_once_over_as_expected_with_its_job_completed_webhook() -> None:
    over = JobView.of(a_job("completed", completed=2, pending=0), {"live": 3})
    assert over.as_expected
    without = with_job(over, [job_webhook("a"), job_webhook("b")])
    assert not without.job_settled
    settled = with_job(
        over, [job_webhook("a"), job_webhook("b"), job_webhook("j", "job.completed")]
    )
    assert settled.job_settled
    assert (settled.job_line() or "").endswith(
        "; 2 item webhook(s) verified; job.completed webhook verified"
    )


def test_a_job_over_with_other_verdicts_than_scripted_is_not_as_expected() -> None:
    assert not JobView.of(a_job("completed", completed=2, pending=0), {"live": 2}).as_expected
    assert not JobView.of(a_job("running"), {"live": 2}).as_expected


def test_a_job_that_could_not_be_created_says_why_and_holds_nothing_up() -> None:
    refused = with_job(JobView(EXPECTED, problem="could not be created: 404"), [])
    assert refused.job_line() == "sample job: could not be created: 404"
    assert refused.job_settled
    assert with_job(JobView(EXPECTED), []).job_webhooks() == (0, False)


def test_the_plain_view_says_the_job_line_on_change_and_lists_only_its_job_completed() -> None:
    out = io.StringIO()
    view = PlainView(out)
    job = JobView.of(a_job(), EXPECTED)

    view.show(with_job(job, []))
    view.show(with_job(job, []))
    view.show(with_job(job, [job_webhook("a"), job_webhook("j", "job.completed")]))

    assert out.getvalue().splitlines() == [
        "sample job job_1 running: submitted 2/2, completed 1, failed 0, expired 0; "
        "cached 0, duplicates 1, rejected 1; 0 item webhook(s) verified",
        "webhook j job.completed job_1: signature verified",
        "sample job job_1 running: submitted 2/2, completed 1, failed 0, expired 0; "
        "cached 0, duplicates 1, rejected 1; 1 item webhook(s) verified; "
        "job.completed webhook verified",
    ]
