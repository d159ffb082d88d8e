"""Retry decisions after a webhook attempt: the schedule, jitter, Retry-After, 410, giving up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.delivery import (
    AttemptOutcome,
    Delivered,
    EndpointGone,
    GiveUp,
    RetryAt,
    attempts_allowed,
    decide_after_attempt,
    describe_failure,
    describe_test_attempt,
    is_success,
    next_retry_delay,
    parse_retry_after,
)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MIDDLE = 0.5  # rand at the middle of [0, 1): no jitter


@pytest.mark.parametrize(
    ("status", "delivered"),
    [
        (200, True),
        (201, True),
        (204, True),
        (299, True),
        (None, False),
        (100, False),
        (199, False),
        (300, False),
        (301, False),
        (302, False),
        (304, False),
        (307, False),
        (400, False),
        (404, False),
        (429, False),
        (500, False),
        (503, False),
    ],
)
def test_only_a_2xx_counts(status: int | None, delivered: bool) -> None:
    assert is_success(status) is delivered
    decision = decide_after_attempt(AttemptOutcome(status), 1, SCHEDULE, NOW, MIDDLE)
    assert isinstance(decision, Delivered) is delivered


def test_default_schedule_allows_eight_attempts() -> None:
    assert attempts_allowed(SCHEDULE) == 8
    assert attempts_allowed(()) == 1


@pytest.mark.parametrize(("attempt", "delay"), list(enumerate(SCHEDULE, start=1)))
def test_each_failed_attempt_waits_its_scheduled_delay(attempt: int, delay: float) -> None:
    decision = decide_after_attempt(AttemptOutcome(500), attempt, SCHEDULE, NOW, MIDDLE)
    assert decision == RetryAt(at=NOW + timedelta(seconds=delay), delay_s=delay, error="HTTP 500")


def test_after_the_last_attempt_the_delivery_gives_up() -> None:
    decision = decide_after_attempt(AttemptOutcome(500), 8, SCHEDULE, NOW, MIDDLE)
    assert decision == GiveUp("HTTP 500")


def test_with_an_empty_schedule_the_first_failure_is_final() -> None:
    assert isinstance(
        decide_after_attempt(AttemptOutcome(None, "timeout"), 1, (), NOW, 0.1), GiveUp
    )


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.8), (0.25, 0.9), (0.5, 1.0), (0.75, 1.1)])
def test_jitter_moves_the_delay_by_up_to_twenty_percent(rand: float, factor: float) -> None:
    assert next_retry_delay(SCHEDULE, 2, rand) == pytest.approx(300.0 * factor)


@given(
    attempt=st.integers(min_value=1, max_value=len(SCHEDULE)),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_jittered_delay_always_within_twenty_percent(attempt: int, rand: float) -> None:
    scheduled = SCHEDULE[attempt - 1]
    delay = next_retry_delay(SCHEDULE, attempt, rand)
    assert 0.8 * scheduled <= delay < 1.2 * scheduled + 1e-9


@given(
    attempt=st.integers(min_value=1, max_value=len(SCHEDULE)),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    status=st.sampled_from([429, 503]),
    retry_after=st.floats(min_value=0.0, max_value=1e9),
)
def test_retry_after_never_shortens_and_never_more_than_doubles(
    attempt: int, rand: float, status: int, retry_after: float
) -> None:
    scheduled = SCHEDULE[attempt - 1]
    plain = next_retry_delay(SCHEDULE, attempt, rand)
    delay = next_retry_delay(SCHEDULE, attempt, rand, status=status, retry_after_s=retry_after)
    assert delay >= plain
    assert delay <= 2 * scheduled + 1e-9


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, "8", 8.0),  # longer than the scheduled 5 s
        (503, "9", 9.0),
        (429, "3600", 10.0),  # capped at twice the scheduled delay
        (429, "1", 5.0),  # never shorter than the schedule
        (500, "20", 5.0),  # only 429 and 503 honour it
        (402, "20", 5.0),
        (429, "soon", 5.0),  # unreadable: ignored
        (429, None, 5.0),
    ],
)
def test_retry_after_on_429_or_503_lengthens_the_next_delay(
    status: int, retry_after: str | None, expected: float
) -> None:
    outcome = AttemptOutcome(status, retry_after=retry_after)
    decision = decide_after_attempt(outcome, 1, SCHEDULE, NOW, MIDDLE)
    assert isinstance(decision, RetryAt)
    assert decision.delay_s == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Thu, 26 Nov 2026 12:01:00 GMT", 60.0),
        ("Thu, 26 Nov 2026 11:00:00 GMT", 0.0),  # in the past: no wait
        ("-5", None),
        ("1.5", None),
        ("²", None),
        ("", None),
        ("tomorrow", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_410_disables_the_endpoint_even_on_the_last_attempt() -> None:
    for attempt in (1, 8):
        decision = decide_after_attempt(AttemptOutcome(410), attempt, SCHEDULE, NOW, MIDDLE)
        assert isinstance(decision, EndpointGone)
        assert "410" in decision.error


@pytest.mark.parametrize(
    ("outcome", "text"),
    [
        (AttemptOutcome(302), "HTTP 302: redirects are not followed"),
        (AttemptOutcome(500), "HTTP 500"),
        (AttemptOutcome(None, "timed out after 15 s"), "timed out after 15 s"),
        (AttemptOutcome(None), "no answer"),
    ],
)
def test_failures_are_described_for_the_attempt_log(outcome: AttemptOutcome, text: str) -> None:
    assert describe_failure(outcome) == text


def test_a_redirect_is_retried_like_any_failure() -> None:
    decision = decide_after_attempt(AttemptOutcome(301), 1, SCHEDULE, NOW, MIDDLE)
    assert isinstance(decision, RetryAt)
    assert "redirect" in decision.error


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_a_test_event_answered_2xx_has_no_error(status: int) -> None:
    assert describe_test_attempt(AttemptOutcome(status, None)) is None


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        (AttemptOutcome(500, None), "HTTP 500"),
        (AttemptOutcome(302, None), "HTTP 302: redirects are not followed"),
        (AttemptOutcome(None, "timed out after 1 s"), "timed out after 1 s"),
        (AttemptOutcome(None, None), "no answer"),
    ],
)
def test_a_failed_test_event_is_described_as_a_delivery_attempt_is(
    outcome: AttemptOutcome, error: str
) -> None:
    assert describe_test_attempt(outcome) == error == describe_failure(outcome)


def test_a_test_event_answered_410_says_it_disabled_nothing() -> None:
    error = describe_test_attempt(AttemptOutcome(410, None))
    assert error is not None
    assert error.startswith("HTTP 410")
    assert "disables nothing" in error
