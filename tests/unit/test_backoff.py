"""The delay between polls: capped exponential, ±20% jitter, clamped to [initial, max]."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.backoff import BackoffPolicy, next_poll_delay

POLICY = BackoffPolicy(initial_s=2.0, max_s=300.0)

# (polls made, random draw, expected delay): rand 0.5 is the unjittered base.
CASES = [
    (0, 0.5, 2.0),
    (1, 0.5, 2.0),
    (2, 0.5, 4.0),
    (3, 0.5, 8.0),
    (8, 0.5, 256.0),
    (9, 0.5, 300.0),
    (50, 0.5, 300.0),
    (10_000, 0.5, 300.0),
    (1, 0.0, 2.0),  # -20% would fall under the initial delay: clamped
    (1, 0.999999, 2.399999),
    (3, 0.0, 6.4),
    (3, 0.75, 8.8),
    (9, 0.999999, 300.0),  # +20% would pass the cap: clamped
    (9, 0.0, 240.0),
]


@pytest.mark.parametrize(("polls_made", "rand", "expected"), CASES)
def test_delay_doubles_from_initial_up_to_the_cap(
    polls_made: int, rand: float, expected: float
) -> None:
    assert next_poll_delay(POLICY, polls_made, rand) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("initial", "maximum", "jitter"),
    [(0.0, 1.0, 0.2), (-1.0, 1.0, 0.2), (2.0, 1.0, 0.2), (1.0, 2.0, 1.0), (1.0, 2.0, -0.1)],
)
def test_invalid_policies_are_refused(initial: float, maximum: float, jitter: float) -> None:
    with pytest.raises(ValueError, match=r"must|needs"):
        BackoffPolicy(initial, maximum, jitter)


policies = st.builds(
    lambda initial, span, jitter: BackoffPolicy(initial, initial * span, jitter),
    st.floats(min_value=0.001, max_value=1000.0),
    st.floats(min_value=1.0, max_value=10_000.0),
    st.floats(min_value=0.0, max_value=0.99),
)
draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(policies, st.integers(min_value=0, max_value=10**6), draws)
def test_delay_is_always_within_bounds(policy: BackoffPolicy, polls_made: int, rand: float) -> None:
    delay = next_poll_delay(policy, polls_made, rand)
    assert policy.initial_s <= delay <= policy.max_s


@given(policies, st.integers(min_value=1, max_value=200), draws)
def test_delay_stays_within_jitter_of_the_base(
    policy: BackoffPolicy, polls_made: int, rand: float
) -> None:
    base = min(policy.max_s, policy.initial_s * 2.0 ** (polls_made - 1))
    delay = next_poll_delay(policy, polls_made, rand)
    assert base * (1 - policy.jitter) - 1e-9 <= delay <= base * (1 + policy.jitter) + 1e-9


@given(policies, st.integers(min_value=1, max_value=200), draws)
def test_same_draw_never_waits_less_after_more_polls(
    policy: BackoffPolicy, polls_made: int, rand: float
) -> None:
    assert next_poll_delay(policy, polls_made + 1, rand) >= next_poll_delay(
        policy, polls_made, rand
    )
