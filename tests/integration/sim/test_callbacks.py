"""The simulator calls back submitted checks as AccuAuth documents (a GET with request_id,
phone_number, phone_status and task_id once the answer is ready), and loses, delays, duplicates
or forges callbacks when told to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from service.sim.callbacks import MAX_CALLBACKS_IN_FLIGHT
from service.sim.server import SimServer
from tests.support.receivers import Receiver, Reply
from tests.support.upstream import API_ID, API_SECRET, SUBMIT
from tests.support.waiting import wait_until


@pytest.fixture
def upstream(fresh_sim: SimServer) -> Iterator[httpx.Client]:
    headers = {"X-DF-API-ID": API_ID, "X-DF-API-SECRET": API_SECRET}
    with httpx.Client(base_url=fresh_sim.base_url, headers=headers, timeout=5) as client:
        yield client


def submit_with_callback(upstream: httpx.Client, receiver: Receiver, path: str) -> str:
    body = {"phone_number": "525512341234", "callback": receiver.url(path)}
    task_id: str = upstream.post(SUBMIT, json=body).json()["task_id"]
    return task_id


def test_a_submitted_check_is_called_back_when_its_answer_is_ready(
    fresh_sim: SimServer, upstream: httpx.Client, receiver: Receiver
) -> None:
    fresh_sim.control.configure(submit_script="busy-0-0.3s")
    submitted = time.monotonic()
    task_id = submit_with_callback(upstream, receiver, "/cb")

    (callback,) = wait_until(lambda: receiver.received("/cb"), 5, "the callback")
    query = {k: v[0] for k, v in parse_qs(callback.query).items()}
    assert query["task_id"] == task_id
    assert query["phone_status"] == "busy"
    assert query["phone_number"] == "5255********"
    assert query["request_id"].startswith("TID")
    assert callback.arrived - submitted >= 0.3
    # The receiver keeps a request before it answers: the sender logs the answer just after.
    (logged,) = wait_until(
        lambda: (log := fresh_sim.control.callback_log())[0]["status"] and log,
        5,
        "the callback's answer logged",
    )
    assert logged["kind"] == "callback"
    assert logged["status"] == 200


def test_lost_callbacks_are_never_sent_but_logged(
    fresh_sim: SimServer, upstream: httpx.Client, receiver: Receiver
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-0.1s")
    fresh_sim.control.set_callbacks(lose=1.0)
    task_id = submit_with_callback(upstream, receiver, "/lost")

    time.sleep(0.5)
    assert receiver.received("/lost") == []
    assert fresh_sim.control.lost_callbacks() == [task_id]


def test_duplicated_forged_and_delayed_callbacks(
    fresh_sim: SimServer, upstream: httpx.Client, receiver: Receiver
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-0.2s")
    fresh_sim.control.set_callbacks(duplicate=1.0, forge=1.0, delay_s=0.3)
    submitted = time.monotonic()
    submit_with_callback(upstream, receiver, "/many")

    received = wait_until(
        lambda: (r := receiver.received("/many")) and len(r) == 3 and r, 5, "three callbacks"
    )
    kinds = [c["kind"] for c in fresh_sim.control.callback_log()]
    assert sorted(kinds) == ["callback", "duplicate", "forged"]
    # The forgery comes at once, before the answer is ready; the others after the delay.
    assert received[0].arrived - submitted < 0.2
    assert all(r.arrived - submitted >= 0.5 for r in received[1:])


def test_a_check_without_a_callback_or_finished_at_once_is_never_called_back(
    fresh_sim: SimServer, upstream: httpx.Client, receiver: Receiver
) -> None:
    fresh_sim.control.configure(submit_script="ring-0")
    upstream.post(SUBMIT, json={"phone_number": "525512341234", "callback": receiver.url("/x")})
    fresh_sim.control.configure(submit_script="ring-0-0.1s")
    upstream.post(SUBMIT, json={"phone_number": "525512341234"})
    time.sleep(0.3)
    assert fresh_sim.control.callback_log() == []


def test_a_stream_of_callbacks_is_sent_once_each_with_at_most_so_many_in_flight(
    fresh_sim: SimServer, upstream: httpx.Client, receiver: Receiver
) -> None:
    # A job's stream of submits: more callbacks due at once than may be in flight, to a receiver
    # that takes its time answering each.
    answer_s = 0.5
    count = 4 * MAX_CALLBACKS_IN_FLIGHT
    receiver.script("/stream", default=Reply(delay_s=answer_s))
    fresh_sim.control.configure(submit_script="ring-0-0.2s")
    task_ids = {submit_with_callback(upstream, receiver, "/stream") for _ in range(count)}

    received = wait_until(
        lambda: (r := receiver.received("/stream")) and len(r) == count and r, 20, "every callback"
    )
    called_back = [parse_qs(r.query)["task_id"][0] for r in received]
    assert sorted(called_back) == sorted(task_ids)
    # A sender starts its next GET only once the last one is answered: within any stretch
    # shorter than one answer, no more GETs arrive than there are senders.
    arrivals = sorted(r.arrived for r in received)
    busiest = max(
        sum(1 for later in arrivals[i:] if later - start < answer_s * 0.9)
        for i, start in enumerate(arrivals)
    )
    assert busiest <= MAX_CALLBACKS_IN_FLIGHT

    # The receiver keeps a request before it answers: the sender logs the answer just after.
    def every_answer_logged() -> list[dict[str, Any]] | None:
        log = fresh_sim.control.callback_log()
        return log if all(c["status"] for c in log) else None

    logged = wait_until(every_answer_logged, 5, "every answer logged")
    assert [c["status"] for c in logged] == [200] * count
