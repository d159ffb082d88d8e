"""Per-client limits as pure rules: which limit applies, the one-second windows, the verdict on a
call and the RateLimit headers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.domain.client_limits import (
    OFF,
    ClientLimits,
    effective_limit,
    judge_rate,
    pending_headers,
    pending_room,
    seconds_to_next_window,
    window_of,
)


def test_a_clients_own_limit_wins_over_the_setting_and_none_follows_it() -> None:
    assert effective_limit(None, 50) == 50
    assert effective_limit(10, 50) == 10
    assert effective_limit(OFF, 50) == OFF  # exempt from the setting


def test_limits_are_on_when_either_is() -> None:
    assert not ClientLimits().any_on
    assert ClientLimits(max_rps=1).any_on
    assert ClientLimits(max_pending=1).any_on


def test_calls_within_the_limit_are_allowed_and_count_down() -> None:
    verdict = judge_rate(3, 1, 100.25)
    assert verdict.allowed
    assert verdict.headers() == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "2",
        "RateLimit-Reset": "1",
    }


def test_a_call_past_the_limit_is_refused_with_retry_after() -> None:
    verdict = judge_rate(3, 4, 100.9)
    assert not verdict.allowed
    assert verdict.remaining == 0
    assert verdict.headers()["Retry-After"] == "1"


@given(st.floats(0, 2e9, allow_nan=False))
def test_a_call_counts_in_the_second_it_falls_in(now_s: float) -> None:
    assert window_of(now_s) <= now_s < window_of(now_s) + 1
    assert 0 < seconds_to_next_window(now_s) <= 1


@given(st.integers(1, 10_000), st.integers(1, 20_000), st.floats(0, 2e9, allow_nan=False))
def test_the_verdict_allows_exactly_the_first_limit_calls_of_a_window(
    limit: int, count: int, now_s: float
) -> None:
    verdict = judge_rate(limit, count, now_s)
    assert verdict.allowed == (count <= limit)
    assert 0 <= verdict.remaining == max(0, limit - count)
    assert verdict.reset_s == 1


@given(st.integers(1, 10_000), st.integers(0, 20_000))
def test_pending_room_is_never_negative(limit: int, pending: int) -> None:
    assert pending_room(limit, pending) == max(0, limit - pending)
    assert pending_headers(limit, pending)["RateLimit-Remaining"] == str(max(0, limit - pending))
