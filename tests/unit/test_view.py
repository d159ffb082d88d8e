"""The demo's view (service/run/view.py): done only when every sample ended as its script says
with a verified webhook, and one plain line per change."""

from __future__ import annotations

import io

from service.domain.states import TaskState
from service.run.receiver import ReceivedWebhook
from service.run.view import PlainView, SampleTask, Snapshot, TaskView

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
