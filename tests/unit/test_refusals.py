"""What an upstream answer means for every call (the pause, the Retry-After block, the rate), and
the decrease of the shared rate after RATE_LIMIT_EXCEEDED: proportional to the share of calls
refused over the recent window, never more than half at once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.domain.answers import Outcome, OutcomeKind
from service.domain.refusals import (
    MIN_MULTIPLIER,
    WINDOW_S,
    Reaction,
    RefusalWindow,
    decrease_multiplier,
    reaction_to,
)


def outcome(
    kind: OutcomeKind, code: str, *, retry_after_s: float | None = None, answered: bool = True
) -> Outcome:
    return Outcome(kind, code, "message", retry_after_s=retry_after_s, answered=answered)


def test_an_account_problem_opens_the_pause_with_its_code() -> None:
    reaction = reaction_to(
        outcome(OutcomeKind.ACCOUNT_PROBLEM, "KEY_EXPIRED"), probe=True, believed_paused=True
    )
    assert reaction == Reaction(pause_reason="KEY_EXPIRED")


def test_an_answer_to_the_probe_or_while_believed_paused_closes_the_pause() -> None:
    pending = outcome(OutcomeKind.PENDING, "PENDING")
    assert reaction_to(pending, probe=True, believed_paused=False) == Reaction(resume=True)
    assert reaction_to(pending, probe=False, believed_paused=True) == Reaction(resume=True)
    assert reaction_to(pending, probe=False, believed_paused=False) == Reaction()


def test_a_call_that_got_no_answer_does_not_close_the_pause() -> None:
    timeout = outcome(OutcomeKind.TRANSIENT, "TIMEOUT", answered=False)
    assert reaction_to(timeout, probe=True, believed_paused=True) == Reaction()


def test_rate_limit_exceeded_slows_down_and_blocks_for_its_retry_after() -> None:
    refused = outcome(OutcomeKind.RATE_LIMITED, "RATE_LIMIT_EXCEEDED", retry_after_s=3.0)
    assert reaction_to(refused, probe=False, believed_paused=False) == Reaction(
        block_for_s=3.0, slow_down=True
    )
    without_retry_after = outcome(OutcomeKind.RATE_LIMITED, "RATE_LIMIT_EXCEEDED")
    assert reaction_to(without_retry_after, probe=False, believed_paused=False) == Reaction(
        slow_down=True
    )


def test_a_few_random_refusals_lower_the_rate_a_little() -> None:
    assert decrease_multiplier(3, 100) == 0.97


def test_mostly_refused_calls_halve_the_rate_as_before() -> None:
    assert decrease_multiplier(90, 100) == MIN_MULTIPLIER
    assert decrease_multiplier(1, 1) == MIN_MULTIPLIER


def test_no_refusal_changes_nothing() -> None:
    assert decrease_multiplier(0, 100) == 1.0
    assert decrease_multiplier(0, 0) == 1.0


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_the_multiplier_is_between_half_and_one(refused: int, calls: int) -> None:
    assert MIN_MULTIPLIER <= decrease_multiplier(refused, calls) <= 1.0


@given(st.integers(1, 1000), st.integers(1, 1000), st.integers(1, 1000))
def test_more_refused_never_means_a_gentler_decrease(refused: int, more: int, calls: int) -> None:
    total = calls + refused + more
    assert decrease_multiplier(refused + more, total) <= decrease_multiplier(refused, total)


def test_the_window_counts_the_last_seconds_only() -> None:
    window = RefusalWindow()
    for i in range(97):
        window.record(100.0 + i * 0.05, refused=False)
    for _ in range(3):
        window.record(104.9, refused=True)
    assert window.counts(104.9) == (3, 100)
    assert window.multiplier(104.9) == 0.97
    # Once the window has passed, only new calls count.
    window.record(100.0 + WINDOW_S + 5.0, refused=True)
    assert window.counts(100.0 + WINDOW_S + 5.0) == (1, 1)


def test_under_three_percent_of_refusals_recovery_outweighs_the_decrease() -> None:
    """The adaptive factor with 3% of calls refused at random at a 400 calls/s ceiling: at most
    one decrease a second (by the refused share), a recovery of 2% of the ceiling a second; the
    factor settles far above the old behaviour's floor (~8%)."""
    factor = 1.0
    for _ in range(600):
        factor = max(0.05, factor * decrease_multiplier(3, 100))
        factor = min(1.0, factor + 0.02)
    assert factor > 0.6
