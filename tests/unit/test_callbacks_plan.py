"""The simulator's callbacks, planned (service/sim/callbacks.py): the one a check gets when its
answer is ready, and each misbehaviour a test can ask for; and their log, bounded."""

from __future__ import annotations

from service.sim.callbacks import (
    CALLBACK_LOG_KEPT,
    FORGED_AFTER_S,
    CallbackLog,
    CallbackSettings,
    PlannedCallback,
    plan_callbacks,
)

URL = "http://phonebridge.test/hooks/accuauth/token"
PARAMS = {"task_id": "T-1", "phone_status": "ring"}


def plan(settings: CallbackSettings, draw: float = 0.0) -> list[tuple[str, float]]:
    planned = plan_callbacks(
        settings, lambda: draw, task_id="T-1", url=URL, ready_at=100.0, now=10.0, params=PARAMS
    )
    return [(callback.kind, callback.at) for callback in planned]


def test_a_check_gets_one_callback_when_its_answer_is_ready() -> None:
    assert plan(CallbackSettings()) == [("callback", 100.0)]


def test_a_delayed_callback_comes_that_much_later() -> None:
    assert plan(CallbackSettings(delay_s=7.5)) == [("callback", 107.5)]


def test_a_lost_callback_is_planned_but_never_sent() -> None:
    assert plan(CallbackSettings(lose=0.5)) == [("lost", 100.0)]
    assert plan(CallbackSettings(lose=0.5), draw=0.9) == [("callback", 100.0)]


def test_a_duplicate_follows_its_callback_and_a_forgery_comes_at_once() -> None:
    assert plan(CallbackSettings(duplicate=1.0, forge=1.0)) == [
        ("forged", 10.0 + FORGED_AFTER_S),
        ("callback", 100.0),
        ("duplicate", 100.01),
    ]


def planned(task_id: str, kind: str = "callback") -> PlannedCallback:
    return PlannedCallback(task_id, URL, PARAMS, 100.0, kind)


def test_the_log_keeps_the_newest_callbacks_and_counts_every_one() -> None:
    log = CallbackLog(kept=3)
    log.add([planned("T-1", "lost"), planned("T-2"), planned("T-2", "duplicate")])
    log.add([planned("T-3"), planned("T-4", "forged")])

    view = log.view()
    assert [(c["task_id"], c["kind"]) for c in view["callbacks"]] == [
        ("T-2", "duplicate"),
        ("T-3", "callback"),
        ("T-4", "forged"),
    ]
    assert view["planned"] == 5
    assert view["planned_by_kind"] == {"lost": 1, "callback": 2, "duplicate": 1, "forged": 1}
    assert view["dropped"] == 2


def test_a_job_sized_stream_keeps_the_log_at_its_bound() -> None:
    log = CallbackLog()
    log.add(planned(f"T-{i}") for i in range(CALLBACK_LOG_KEPT + 1000))
    assert len(log.recent) == CALLBACK_LOG_KEPT
    assert log.recent[0].task_id == "T-1000"
    assert log.view()["dropped"] == 1000
