"""The simulator's callbacks, planned (service/sim/callbacks.py): the one a check gets when its
answer is ready, and each misbehaviour a test can ask for."""

from __future__ import annotations

from service.sim.callbacks import FORGED_AFTER_S, CallbackSettings, plan_callbacks

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
