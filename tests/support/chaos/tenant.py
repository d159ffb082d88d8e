"""A client of the chaos stack, seen from outside as a customer sees phonebridge: an API key,
webhook subscriptions to its own receivers, tasks registered through the REST API, and the
checks that every promise held: each task in its scripted final state, exactly one event each,
every event delivered to every subscription, and the attempt log equal to what arrived.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from standardwebhooks import Webhook

from service.sim.scripts import PHONE_STATUSES
from tests.support.api import bearer
from tests.support.chaos.stack import STACK_SETTINGS, Stack, is_fault
from tests.support.receivers import Answered, FlakyReceiver
from tests.support.waiting import wait_until

EVENT_OF_STATE = {
    "completed": "task.completed",
    "failed": "task.failed",
    "expired": "task.expired",
}
PAGE = 500
BATCH = 1000
# "never" tasks are registered as submitted this long before their TTL ends, so they expire
# within the scenario instead of after the whole TTL.
EXPIRES_AFTER_S = 10.0
# The worker log lines of one webhook attempt each (delivered, to be retried, given up).
ATTEMPT_LOG_EVENTS = frozenset(
    {"webhook.delivered", "webhook.attempt_failed", "webhook.delivery_failed"}
)
# Slack for the clocks of two processes: calls start at least DEADLINE_MARGIN (1 s) before a
# deadline, so even a starved event loop's call reaches the simulator before it.
CALL_TRANSIT_S = 0.1


@dataclass(frozen=True)
class Planned:
    """One task and the final state its script leads to."""

    task_id: str
    state: str
    phone_status: str | None = None
    # Registered as submitted so long ago that it expires this many seconds after registration.
    expires_in_s: float | None = None


def plan_tasks(
    tag: str, count: int, *, pending_calls: int = 2, pending_s: int = 0, spread_s: int = 0
) -> list[Planned]:
    """`count` simulator-scripted tasks: mostly completed (all eight phone statuses, each after
    0..`pending_calls` PENDING answers and `pending_s`..`pending_s + spread_s` seconds), one in
    ten failed (INVALID_ARGUMENT), one in ten expired (never answered)."""
    statuses = itertools.cycle(PHONE_STATUSES)
    planned = []
    for i in range(count):
        calls = i % (pending_calls + 1)
        seconds = pending_s + i % (spread_s + 1)
        wait = f"-{seconds}s" if seconds else ""
        if i % 10 == 3:
            planned.append(Planned(f"sim-invalid-{calls}{wait}-{tag}-{i}", "failed"))
        elif i % 10 == 7:
            planned.append(Planned(f"sim-never-{tag}-{i}", "expired", None, EXPIRES_AFTER_S))
        else:
            status = next(statuses)
            planned.append(Planned(f"sim-{status}-{calls}{wait}-{tag}-{i}", "completed", status))
    return planned


@dataclass
class Subscription:
    id: str
    secret: str
    receiver: FlakyReceiver


@dataclass
class Figures:
    """What one scenario observed, for docs/reliability.md."""

    tasks: int = 0
    upstream_calls: int = 0
    upstream_faults: int = 0
    events: int = 0
    lost: int = 0
    duplicate_events: int = 0
    webhook_attempts: int = 0
    webhook_attempts_failed: int = 0
    duplicate_deliveries: int = 0
    api_responses: Counter[int] = field(default_factory=Counter)
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "upstream_calls": self.upstream_calls,
            "upstream_faults_injected": self.upstream_faults,
            "events": self.events,
            "lost": self.lost,
            "duplicate_events": self.duplicate_events,
            "webhook_attempts": self.webhook_attempts,
            "webhook_attempts_failed": self.webhook_attempts_failed,
            "duplicate_deliveries_observed": self.duplicate_deliveries,
            "api_5xx": sum(n for status, n in self.api_responses.items() if status >= 500),
            "api_500": self.api_responses.get(500, 0),
            "api_503": self.api_responses.get(503, 0),
            **self.notes,
        }


class Tenant:
    """One API client of the stack, with its own key, receivers and tasks."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.stack = stack
        self.name = name
        self.figures = Figures()
        self.planned: dict[str, Planned] = {}
        self.subscriptions: list[Subscription] = []
        self.started_at = time.time()
        self._counting = threading.Lock()  # the client may be used from several threads
        api_key = stack.create_api_key(name)
        self.http = httpx.Client(
            base_url=stack.api_url,
            headers=bearer(api_key),
            timeout=10.0,
            event_hooks={"response": [self._count]},
        )

    def _count(self, response: httpx.Response) -> None:
        with self._counting:
            self.figures.api_responses[response.status_code] += 1

    def close(self) -> None:
        self.http.close()

    # --- setting up ---------------------------------------------------------------------------
    def subscribe(self, receiver: FlakyReceiver) -> Subscription:
        response = self.http.post("/v1/subscriptions", json={"url": receiver.url("/hook")})
        assert response.status_code == 201, response.text
        body = response.json()
        subscription = Subscription(body["id"], body["secret"], receiver)
        self.subscriptions.append(subscription)
        return subscription

    def submit(self, planned: list[Planned]) -> None:
        """Register the tasks through the batch endpoint; every one must be created."""
        for start in range(0, len(planned), BATCH):
            chunk = planned[start : start + BATCH]
            response = self.http.post("/v1/tasks/batch", json={"tasks": [_body(p) for p in chunk]})
            assert response.status_code == 200, response.text
            outcomes = [result["outcome"] for result in response.json()["results"]]
            assert outcomes == ["created"] * len(chunk), response.text
        self.planned.update((p.task_id, p) for p in planned)
        self.figures.tasks += len(planned)

    def submit_one(self, planned: Planned) -> httpx.Response:
        """One registration, as a client whose request may fail; recorded only when accepted."""
        response = self.http.post("/v1/tasks", json=_body(planned))
        if response.status_code in (200, 201):
            with self._counting:
                self.planned[planned.task_id] = planned
                self.figures.tasks += 1
        return response

    # --- reading back, as the client would -----------------------------------------------------
    def pending_count(self) -> int:
        response = self.http.get("/v1/tasks", params={"state": "pending", "limit": PAGE})
        response.raise_for_status()
        return len(response.json()["data"])

    def wait_until_final(self, timeout_s: float) -> None:
        wait_until(lambda: self.pending_count() == 0, timeout_s, "every task to be final", 0.5)

    def tasks(self) -> dict[str, dict[str, Any]]:
        return {task["task_id"]: task for task in self._pages("/v1/tasks", "cursor")}

    def events(self) -> list[dict[str, Any]]:
        return list(self._pages("/v1/events", "after"))

    def _pages(self, path: str, cursor_param: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": PAGE}
        while True:
            response = self.http.get(path, params=params)
            response.raise_for_status()
            page = response.json()
            items.extend(page["data"])
            if page["next_cursor"] is None:
                return items
            params[cursor_param] = page["next_cursor"]

    def accepted_ids(self, subscription: Subscription) -> set[str]:
        return {a.webhook_id for a in subscription.receiver.answered() if a.accepted}

    def wait_until_delivered(self, timeout_s: float) -> None:
        """Until each subscription's receiver has accepted every one of this client's events."""
        event_ids = {event["id"] for event in self.events()}

        def delivered() -> bool:
            return all(event_ids <= self.accepted_ids(s) for s in self.subscriptions)

        wait_until(delivered, timeout_s, "every event to be delivered", 0.5)

    # --- the promises ---------------------------------------------------------------------------
    def finish_and_check(
        self, *, final_within_s: float = 120, delivered_within_s: float = 30, attempts: bool = False
    ) -> None:
        """Wait for every task to be final and every event delivered, then check it all (see
        check_tasks_and_events and check_deliveries)."""
        self.wait_until_final(timeout_s=final_within_s)
        self.count_upstream()
        events = self.check_tasks_and_events()
        self.wait_until_delivered(timeout_s=delivered_within_s)
        self.check_deliveries(events, check_attempts=attempts)

    def check_tasks_and_events(self) -> list[dict[str, Any]]:
        """Every planned task is in its scripted final state with exactly one event of the
        matching type carrying the task as it ended; returns the events."""
        tasks = self.tasks()
        events = self.events()
        per_task = Counter(event["data"]["task_id"] for event in events)
        self.figures.events = len(events)
        self.figures.duplicate_events = sum(n - 1 for n in per_task.values() if n > 1)
        wrong = []
        for task_id, planned in self.planned.items():
            task = tasks.get(task_id)
            if task is None or task["state"] != planned.state:
                wrong.append(f"{task_id}: {task and task['state']}, expected {planned.state}")
            elif planned.phone_status and task["result"]["phone_status"] != planned.phone_status:
                wrong.append(f"{task_id}: {task['result']}, expected {planned.phone_status}")
            elif per_task[task_id] != 1:
                wrong.append(f"{task_id}: {per_task[task_id]} events")
        for event in events:
            planned_task = self.planned.get(event["data"]["task_id"])
            if planned_task is None:
                wrong.append(f"{event['id']}: an event for a task never registered")
            elif event["type"] != EVENT_OF_STATE[planned_task.state]:
                wrong.append(f"{event['id']}: {event['type']} for a {planned_task.state} task")
        self.figures.lost = len(wrong)
        assert not wrong, f"{len(wrong)} tasks wrong, e.g. {wrong[:5]}"
        assert len(tasks) == len(self.planned)
        self._check_no_poll_after_expiry(tasks)
        return events

    def _check_no_poll_after_expiry(self, tasks: dict[str, dict[str, Any]]) -> None:
        """No call for an expired task reached upstream after its expires_at."""
        last_call: dict[str, float] = {}
        for call in self.stack.sim.control.calls(since=self.started_at, endpoint="task_result"):
            if call["task_id"] is not None:
                last_call[call["task_id"]] = max(call["at"], last_call.get(call["task_id"], 0.0))
        late = []
        for task_id, planned in self.planned.items():
            if planned.state != "expired" or task_id not in last_call:
                continue
            expires_at = datetime.fromisoformat(tasks[task_id]["expires_at"]).timestamp()
            if last_call[task_id] > expires_at + CALL_TRANSIT_S:
                late.append(f"{task_id}: {last_call[task_id] - expires_at:.3f} s after expiry")
        assert not late, f"{len(late)} polls after expiry, e.g. {late[:5]}"

    def check_deliveries(self, events: list[dict[str, Any]], *, check_attempts: bool) -> None:
        """Every event reached every subscription with a valid signature; with
        `check_attempts`, each delivery's attempt log holds exactly the requests its receiver
        got, with the statuses it answered (timeouts recorded as errors)."""
        event_ids = {event["id"] for event in events}
        for subscription in self.subscriptions:
            answered = subscription.receiver.answered()
            accepted = [a for a in answered if a.accepted]
            assert event_ids <= {a.webhook_id for a in accepted}, "an event was not delivered"
            verifier = Webhook(subscription.secret)
            for attempt in accepted:
                verifier.verify(attempt.request.body, attempt.request.headers)
            accepted_per_event = Counter(a.webhook_id for a in accepted)
            self.figures.duplicate_deliveries += sum(
                n - 1 for n in accepted_per_event.values() if n > 1
            )
            self.figures.webhook_attempts += len(answered)
            self.figures.webhook_attempts_failed += len(answered) - len(accepted)
            if check_attempts:
                self._check_attempt_log(subscription, answered, event_ids)

    def _check_attempt_log(
        self, subscription: Subscription, answered: list[Answered], event_ids: set[str]
    ) -> None:
        received: dict[str, list[Answered]] = {}
        for a in answered:
            received.setdefault(a.webhook_id, []).append(a)
        mismatched = []
        late_for_the_sender = 0
        for event_id in sorted(event_ids):
            response = self.http.get(f"/v1/events/{event_id}/deliveries")
            response.raise_for_status()
            (delivery,) = [
                d for d in response.json()["data"] if d["subscription_id"] == subscription.id
            ]
            logged = [_attempt_summary(attempt) for attempt in delivery["attempts"]]
            seen = received.get(event_id, [])
            matches = [_logged_as_answered(log, a) for log, a in zip(logged, seen, strict=False)]
            if delivery["state"] != "succeeded" or len(logged) != len(seen) or not all(matches):
                answers = [_answer_summary(a) for a in seen]
                mismatched.append(f"{event_id}: logged {logged}, received {answers}")
            late_for_the_sender += sum(
                log == TIMED_OUT and not a.reply.delay_s
                for log, a in zip(logged, seen, strict=False)
            )
        assert not mismatched, f"{len(mismatched)} attempt logs differ, e.g. {mismatched[:3]}"
        self.figures.notes["immediate_answers_the_sender_timed_out_on"] = (
            self.figures.notes.get("immediate_answers_the_sender_timed_out_on", 0)
            + late_for_the_sender
        )
        lines = self.stack.worker_log_entries(ATTEMPT_LOG_EVENTS)
        logged_lines = Counter(
            e["event_id"] for e in lines if e.get("subscription_id") == subscription.id
        )
        received_counts = {event_id: len(seen) for event_id, seen in received.items()}
        assert logged_lines == received_counts, "a worker log line per attempt"

    def count_upstream(self) -> None:
        """The simulator's view since this tenant started: task_result calls and injected
        faults."""
        stats = self.stack.sim.control.stats(since=self.started_at, endpoint="task_result")
        self.figures.upstream_calls = stats["calls"]
        self.figures.upstream_faults = sum(
            n for label, n in stats["answers"].items() if is_fault(label)
        )

    def check_no_server_errors(self, allowed: frozenset[int] = frozenset()) -> None:
        errors = {
            status: n
            for status, n in self.figures.api_responses.items()
            if status >= 500 and status not in allowed
        }
        assert not errors, f"the API answered {errors}"


TIMED_OUT = "timed out"


def _attempt_summary(attempt: dict[str, Any]) -> str:
    """An attempt as the sender logged it: the status it got, or "timed out"."""
    if attempt["response_status"] is not None:
        return str(attempt["response_status"])
    error = attempt["error"] or ""
    return TIMED_OUT if error.startswith("timed out") else f"error: {error}"


def _answer_summary(answered: Answered) -> str:
    """An attempt as the receiver answered it: a reply delayed past the sender's timeout comes
    too late to be seen."""
    return TIMED_OUT if answered.reply.delay_s else str(answered.reply.status)


def _logged_as_answered(logged: str, answered: Answered) -> bool:
    """Whether the sender's log of one attempt is true to what the receiver did: the status it
    answered, or a timeout where it answered after the timeout. An immediate answer may also
    be logged as a timeout: the sender's own timer fired first (on a machine this loaded, a
    worker's event loop can be kept from running for longer than the 1 s timeout), which the
    sender truly saw; the scenario's figures count those. A status for a late answer, another
    status, or a missing or extra attempt is a mismatch."""
    expected = _answer_summary(answered)
    return logged == expected or (logged == TIMED_OUT and not answered.reply.delay_s)


def _body(planned: Planned) -> dict[str, Any]:
    body: dict[str, Any] = {"task_id": planned.task_id}
    if planned.expires_in_s is not None:
        ttl_s = float(STACK_SETTINGS["PHONEBRIDGE_TASK_TTL_S"])
        submitted_at = datetime.now(UTC) - timedelta(seconds=ttl_s - planned.expires_in_s)
        body["submitted_at"] = submitted_at.isoformat()
    return body
