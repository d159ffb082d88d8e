"""The schedule's settings: adaptive by default, the call budget, the estimate's knobs, and the
one-line refusal of values that cannot work."""

from __future__ import annotations

import pytest

from service.config import ConfigError, build_settings
from service.domain.schedule import PollSchedule

pytestmark = pytest.mark.usefixtures("clean_env")


def test_the_adaptive_schedule_is_the_default_with_three_calls_per_task() -> None:
    settings = build_settings()
    assert settings.poll_schedule is PollSchedule.ADAPTIVE
    assert settings.poll_calls_per_task == 3.0
    assert settings.poll_estimate_half_life_s == 3600
    assert settings.poll_estimate_min_completions == 50
    assert settings.schedule_policy.target_p == pytest.approx(1 / 2)
    assert settings.poll_target_p95_s is None
    assert settings.schedule_policy.target_p95_s is None


def test_a_lag_target_reaches_the_schedule_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONEBRIDGE_POLL_TARGET_P95_S", "12.5")
    assert build_settings().schedule_policy.target_p95_s == 12.5


def test_backoff_keeps_the_plain_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONEBRIDGE_POLL_SCHEDULE", "backoff")
    monkeypatch.setenv("PHONEBRIDGE_POLL_CALLS_PER_TASK", "4")
    settings = build_settings()
    assert settings.schedule_policy.schedule is PollSchedule.BACKOFF
    assert settings.schedule_policy.target_p == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PHONEBRIDGE_POLL_SCHEDULE", "fibonacci"),
        ("PHONEBRIDGE_POLL_CALLS_PER_TASK", "1.5"),
        ("PHONEBRIDGE_POLL_CALLS_PER_TASK", "many"),
        ("PHONEBRIDGE_POLL_ESTIMATE_HALF_LIFE_S", "0"),
        ("PHONEBRIDGE_POLL_ESTIMATE_MIN_COMPLETIONS", "0"),
        ("PHONEBRIDGE_POLL_TARGET_P95_S", "0"),
        ("PHONEBRIDGE_POLL_TARGET_P95_S", "soon"),
    ],
)
def test_unusable_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        build_settings()
