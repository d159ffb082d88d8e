"""How long a delivery is handed back when its subscription already has its share in flight."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.delivery import POSTPONE_S, postpone_s

CEILING_S = 65.0


@pytest.mark.parametrize(
    ("in_flight", "per_endpoint", "latency_s", "unanswered_s", "expected_s"),
    [
        # A healthy endpoint drains its share in well under a second: the floor.
        (1200, 100, 0.01, 0.0, POSTPONE_S),
        # Nothing known yet (no answer, just became busy): the floor.
        (1200, 100, 0.0, 0.0, POSTPONE_S),
        # A slow endpoint: twelve rounds of 0.5 s.
        (1200, 100, 0.5, 0.1, 6.0),
        # No answer for two seconds: at least that long per round, whatever the history said.
        (1200, 100, 0.01, 2.0, 24.0),
        # Every attempt times out: held back until the share could have drained, capped.
        (1200, 100, 5.0, 5.0, 60.0),
        (1200, 100, 15.0, 3.0, CEILING_S),
    ],
)
def test_postponement_is_about_the_time_the_subscriptions_share_takes_to_drain(
    in_flight: int, per_endpoint: int, latency_s: float, unanswered_s: float, expected_s: float
) -> None:
    assert postpone_s(in_flight, per_endpoint, latency_s, unanswered_s, CEILING_S) == pytest.approx(
        expected_s
    )


@given(
    in_flight=st.integers(1, 100_000),
    per_endpoint=st.integers(1, 1000),
    latency_s=st.floats(0, 3600),
    unanswered_s=st.floats(0, 86_400),
    ceiling_s=st.floats(POSTPONE_S, 3600),
)
def test_postponement_stays_between_the_floor_and_the_ceiling(
    in_flight: int, per_endpoint: int, latency_s: float, unanswered_s: float, ceiling_s: float
) -> None:
    delay = postpone_s(in_flight, per_endpoint, latency_s, unanswered_s, ceiling_s)
    assert POSTPONE_S <= delay <= ceiling_s


@given(
    latency_s=st.floats(0, 60),
    unanswered_s=st.floats(0, 60),
    longer_by=st.floats(0, 60),
)
def test_a_slower_endpoint_is_never_held_back_for_less(
    latency_s: float, unanswered_s: float, longer_by: float
) -> None:
    before = postpone_s(1200, 100, latency_s, unanswered_s, CEILING_S)
    assert postpone_s(1200, 100, latency_s + longer_by, unanswered_s, CEILING_S) >= before
    assert postpone_s(1200, 100, latency_s, unanswered_s + longer_by, CEILING_S) >= before
