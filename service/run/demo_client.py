"""The demo's calls to the REST API, as any client would make them: a subscription, registered
tasks, submitted checks, a check job, and what the live view reads. An error answer stops the
demo naming the call, its status and the problem's title (never its body, which could echo what
was sent)."""

from __future__ import annotations

from typing import Any

import httpx

from service.domain.states import TASK_EVENT_TYPES, EventType
from service.run.supervisor import SupervisorFailed
from service.run.view import SampleTask, TaskView

HTTP_TIMEOUT_S = 10.0


class DemoClient:
    """The demo's calls to the REST API, as any client would make them."""

    def __init__(self, api_url: str, api_key: str) -> None:
        self._http = httpx.Client(
            base_url=api_url,
            headers={"authorization": f"Bearer {api_key}"},
            timeout=HTTP_TIMEOUT_S,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            # The problem's title and status only: a body could echo what was sent.
            raise SupervisorFailed(
                f"{method} {path} answered {response.status_code}: {_problem_title(response)}"
            )
        return response.json()

    def subscribe(self, url: str) -> tuple[str, str]:
        """A subscription to every task event (the sample job's items' included) and to
        `job.completed`; its id and signing secret."""
        body = {
            "url": url,
            "description": "phonebridge demo receiver",
            "event_types": [*TASK_EVENT_TYPES, EventType.JOB_COMPLETED],
        }
        created = self._call("POST", "/v1/subscriptions", json=body)
        return str(created["id"]), str(created["secret"])

    def register(self, samples: list[SampleTask]) -> None:
        tasks = [{"task_id": s.task_id, "metadata": {"demo": True}} for s in samples]
        results = self._call("POST", "/v1/tasks/batch", json={"tasks": tasks})["results"]
        rejected = [r for r in results if r.get("outcome") == "rejected"]
        if rejected:
            raise SupervisorFailed(f"sample task rejected: {rejected[0].get('detail')}")

    def submit(self, phone_number: str, idempotency_key: str) -> str:
        """Submit a check; the task_id of the task it became."""
        answer = self._call(
            "POST",
            "/v1/checks",
            json={"phone_number": phone_number, "metadata": {"demo": True}},
            headers={"idempotency-key": idempotency_key},
        )
        return str(answer["task_id"])

    def create_job(self, lines: list[tuple[str, str]], idempotency_key: str) -> dict[str, Any]:
        """A started check job of (phone number, reference) lines, as a list's owner sends it."""
        items = [
            {"phone_number": number, "reference": reference, "metadata": {"demo": True}}
            for number, reference in lines
        ]
        job: dict[str, Any] = self._call(
            "POST",
            "/v1/check-jobs",
            json={"name": "phonebridge demo", "items": items},
            headers={"idempotency-key": idempotency_key},
        )
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._call("GET", f"/v1/check-jobs/{job_id}")
        return job

    def tasks(self, samples: list[SampleTask]) -> dict[str, TaskView]:
        wanted = {s.task_id for s in samples}
        page = self._call("GET", "/v1/tasks", params={"limit": 500})
        return {t["task_id"]: TaskView.of(t) for t in page["data"] if t["task_id"] in wanted}


def _problem_title(response: httpx.Response) -> str:
    try:
        return str(response.json().get("title", ""))
    except ValueError:
        return ""
