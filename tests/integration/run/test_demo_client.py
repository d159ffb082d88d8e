"""The demo's REST calls (service/run/demo_client.py) against a real local HTTP server: the API
key and the Idempotency-Key go with each call, the answer is read as the contract shapes it, and
an error answer stops the demo naming the call, its status and the problem's title, never the
body's detail (it could echo what was sent)."""

from __future__ import annotations

import orjson
import pytest

from service.domain.states import TaskState
from service.run.demo_client import DemoClient
from service.run.supervisor import SupervisorFailed
from service.run.view import SampleTask
from tests.support.receivers import Reply, running_receiver

KEY = "pb_demo_key_for_this_test"


def test_a_check_goes_with_the_key_and_its_idempotency_key_and_answers_its_task_id() -> None:
    with running_receiver() as api:
        api.script("/v1/checks", Reply(201, orjson.dumps({"task_id": "t-1", "state": "pending"})))
        client = DemoClient(api.url(""), KEY)
        try:
            assert client.submit("+52 55 1234 5678", "demo-tag-0") == "t-1"
        finally:
            client.close()
        (request,) = api.received("/v1/checks")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["idempotency-key"] == "demo-tag-0"
    assert orjson.loads(request.body) == {
        "phone_number": "+52 55 1234 5678",
        "metadata": {"demo": True},
    }


def test_an_error_answer_names_the_call_status_and_title_but_not_the_detail() -> None:
    problem = {"title": "Unprocessable Content", "status": 422, "detail": "echoes +52 55 1234"}
    with running_receiver() as api:
        api.script("/v1/check-jobs", Reply(422, orjson.dumps(problem)))
        client = DemoClient(api.url(""), KEY)
        try:
            with pytest.raises(SupervisorFailed) as failed:
                client.create_job([("+52 55 1234 5678", "demo-01")], "demo-tag-job")
        finally:
            client.close()
    assert str(failed.value) == "POST /v1/check-jobs answered 422: Unprocessable Content"


def test_a_sample_task_the_batch_rejects_stops_the_demo() -> None:
    results = {"results": [{"task_id": "sim-never-0-x", "outcome": "rejected", "detail": "bad"}]}
    with running_receiver() as api:
        api.script("/v1/tasks/batch", Reply(207, orjson.dumps(results)))
        client = DemoClient(api.url(""), KEY)
        try:
            with pytest.raises(SupervisorFailed, match="sample task rejected: bad"):
                client.register([SampleTask("sim-never-0-x", TaskState.EXPIRED)])
        finally:
            client.close()
