"""The /_sim/ control API: registering tasks, reading calls and stats, changing faults."""

from __future__ import annotations

import time

import httpx
import pytest

from service.sim.server import SimServer
from tests.support.upstream import SUBMIT, poll


def test_registered_task_follows_its_script(sim: SimServer, upstream: httpx.Client) -> None:
    view = sim.control.register("T-1", fate="empty", pending_calls=2)
    assert view["script"] == "empty-2"
    assert view["calls"] == 0
    statuses = [poll(upstream, "T-1").json()["status"] for _ in range(3)]
    assert statuses == ["PENDING", "PENDING", "OK"]


def test_task_view_lists_every_call_time_and_answer(sim: SimServer, upstream: httpx.Client) -> None:
    sim.control.register("T-2", script="ring-1")
    before = time.time()
    for _ in range(3):
        poll(upstream, "T-2")
    view = sim.control.task("T-2")
    assert view["calls"] == 3
    assert view["answers"] == ["PENDING", "OK", "OK"]
    assert before <= view["call_times"][0] <= view["call_times"][1] <= view["call_times"][2]
    assert view["call_times"][2] <= time.time()
    assert view["final_at"] == view["call_times"][1]
    assert view["calls_after_final"] == 1


def test_register_many_tasks_at_once(sim: SimServer, upstream: httpx.Client) -> None:
    views = sim.control.register_many(
        [{"task_id": f"T-batch-{i}", "script": "busy-0"} for i in range(3)]
    )
    assert [v["task_id"] for v in views] == ["T-batch-0", "T-batch-1", "T-batch-2"]
    assert poll(upstream, "T-batch-2").json()["result"]["phone_status"] == "busy"


def test_registered_task_without_an_id_gets_one_that_carries_its_script(
    sim: SimServer, upstream: httpx.Client
) -> None:
    task_id = sim.control.register(script="line_abnormal-1")["task_id"]
    sim.control.reset()  # forgotten, as after a simulator restart
    statuses = [poll(upstream, task_id).json()["status"] for _ in range(2)]
    assert statuses == ["PENDING", "OK"]


def test_task_registered_by_sim_id_alone_uses_the_id_script(sim: SimServer) -> None:
    assert sim.control.register("sim-connected-4-x")["script"] == "connected-4"


@pytest.mark.parametrize(
    "body",
    [
        {"task_id": "T-x"},
        {"script": "ringing-1"},
        {"fate": "maybe"},
        {"fate": "ring", "pending_calls": -1},
        {"fate": "ring", "colour": "red"},
        {"task_id": "", "fate": "ring"},
    ],
)
def test_impossible_registration_answers_422_with_a_reason(
    anonymous: httpx.Client, body: dict[str, object]
) -> None:
    response = anonymous.post("/_sim/tasks", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_unknown_task_view_answers_404(anonymous: httpx.Client) -> None:
    response = anonymous.get("/_sim/tasks/T-none")
    assert response.status_code == 404


def test_call_log_filters_by_task_endpoint_and_time(sim: SimServer, upstream: httpx.Client) -> None:
    poll(upstream, "sim-ring-0-a")
    middle = time.time()
    poll(upstream, "sim-ring-0-b")
    upstream.post(SUBMIT, json={"phone_number": "525512345678"})
    calls = sim.control.calls()
    assert [c["endpoint"] for c in calls] == ["task_result", "task_result", "submit"]
    assert [c["task_id"] for c in sim.control.calls(task_id="sim-ring-0-b")] == ["sim-ring-0-b"]
    assert len(sim.control.calls(endpoint="submit")) == 1
    assert [c["task_id"] for c in sim.control.calls(since=middle)] == ["sim-ring-0-b", None]
    assert [c["answer"] for c in sim.control.calls(until=middle)] == ["OK"]


def test_a_submits_log_entry_names_its_number_and_the_task_it_made(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.configure(submit_script="ring-1")
    made = upstream.post(SUBMIT, json={"phone_number": "+525512345678"}).json()["task_id"]
    upstream.post(SUBMIT, json={"phone_number": "5712345678"})  # refused: no task
    upstream.post(SUBMIT, json={"phone_number": "not a number"})
    sim.control.configure(submit_script="busy-0")  # answered at once: no task
    upstream.post(SUBMIT, json={"phone_number": "573001234567"})
    poll(upstream, made)
    calls = sim.control.calls()
    assert [(c["phone_number"], c["answered_task_id"], c["answer"]) for c in calls] == [
        ("525512345678", made, "OK"),
        ("5712345678", None, "INVALID_ARGUMENT"),
        (None, None, "INVALID_ARGUMENT"),
        ("573001234567", None, "OK"),
        (None, None, "PENDING"),
    ]
    assert calls[-1]["task_id"] == made
    # A slowed or refused submit still names the number it carried.
    sim.control.replace_faults(probabilities={"slow": 1.0}, slow_s=0.01)
    slowed = upstream.post(SUBMIT, json={"phone_number": "525587654321"}).json()
    sim.control.replace_faults(force={"mode": "rate_limit"})
    upstream.post(SUBMIT, json={"phone_number": "525587654322"})
    slow_call, refused_call = sim.control.calls(endpoint="submit")[-2:]
    assert (slow_call["phone_number"], slow_call["answered_task_id"]) == (
        "525587654321",
        slowed.get("task_id"),
    )
    assert slow_call["answer"] == "slow:OK"
    assert (refused_call["phone_number"], refused_call["answer"]) == (
        "525587654322",
        "RATE_LIMIT_EXCEEDED",
    )


def test_stats_count_calls_answers_and_finished_tasks(
    sim: SimServer, upstream: httpx.Client
) -> None:
    for task_id in ("sim-ring-1-a", "sim-ring-1-a", "sim-busy-0-b", "sim-busy-0-b"):
        poll(upstream, task_id)
    stats = sim.control.stats()
    assert stats["calls"] == 4
    assert stats["answers"] == {"PENDING": 1, "OK": 3}
    assert stats["tasks"] == 2
    assert stats["tasks_called"] == 2
    assert stats["tasks_finished"] == 2
    assert stats["calls_after_final"] == 1
    assert stats["calls_after_expiry"] == 0
    assert stats["max_calls_in_window"] == 4
    assert stats["first_call_at"] <= stats["busiest_window_start"] <= stats["last_call_at"]


def test_stats_busiest_window_respects_its_length(sim: SimServer, upstream: httpx.Client) -> None:
    poll(upstream, "sim-never")
    time.sleep(0.3)  # two bursts apart in time is the thing being measured
    for _ in range(3):
        poll(upstream, "sim-never")
    assert sim.control.stats(window_s=0.25)["max_calls_in_window"] == 3
    assert sim.control.stats(window_s=5)["max_calls_in_window"] == 4
    assert sim.control.stats(endpoint="submit")["calls"] == 0


def test_put_faults_replaces_and_patch_merges(sim: SimServer) -> None:
    sim.control.set_faults(probabilities={"html": 0.1}, rate_limit_rps=50, retry_after_s=3)
    merged = sim.control.set_faults(probabilities={"empty": 0.2})
    assert merged["probabilities"] == {"html": 0.1, "empty": 0.2}
    assert merged["rate_limit_rps"] == 50
    replaced = sim.control.replace_faults(probabilities={"garbage": 0.05})
    assert replaced == {
        "probabilities": {"garbage": 0.05},
        "slow_s": 5.0,
        "rate_limit_rps": None,
        "retry_after_s": None,
        "force": None,
    }
    assert sim.control.faults() == replaced


@pytest.mark.parametrize(
    "change",
    [
        {"probabilities": {"html": 0.7, "empty": 0.6}},
        {"probabilities": {"lightning": 0.1}},
        {"probabilities": {"html": 1.1}},
        {"force": {"mode": "nope"}},
        {"force": {"mode": "html", "calls": 0}},
        {"rate_limit_rps": 0},
        {"colour": "red"},
    ],
)
def test_impossible_fault_settings_answer_422_and_change_nothing(
    sim: SimServer, anonymous: httpx.Client, change: dict[str, object]
) -> None:
    before = sim.control.faults()
    response = anonymous.patch("/_sim/faults", json=change)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert sim.control.faults() == before


def test_reset_forgets_tasks_calls_and_fault_changes(
    sim: SimServer, upstream: httpx.Client
) -> None:
    start_faults = sim.control.faults()
    sim.control.register("T-r", fate="ring")
    poll(upstream, "T-r")
    sim.control.set_faults(force={"mode": "html"})
    sim.control.configure(task_ttl_s=10)
    sim.control.reset()
    assert sim.control.stats()["calls"] == 0
    assert sim.control.stats()["tasks"] == 0
    assert sim.control.faults() == start_faults
    assert sim.control.config()["task_ttl_s"] == 86400.0


def test_configured_validity_applies_to_tasks_registered_later(sim: SimServer) -> None:
    sim.control.configure(task_ttl_s=30)
    view = sim.control.register("T-ttl", fate="ring", submitted_at=1000.0)
    assert view["expires_at"] == 1030.0


def test_unknown_submit_script_answers_422(sim: SimServer, anonymous: httpx.Client) -> None:
    response = anonymous.patch("/_sim/config", json={"submit_script": "rang-2"})
    assert response.status_code == 422
    assert sim.control.config()["submit_script"] == "random"
