"""How many of one subscription's deliveries a process takes on at once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.delivery import subscription_share

PER_ENDPOINT = 100
LEASE_S = 10.0
TIMEOUT_S = 15.0
MAX_SHARE = 2500


def share(latency_s: float | None, unanswered_s: float = 0.0, timeout_s: float = TIMEOUT_S) -> int:
    return subscription_share(PER_ENDPOINT, LEASE_S, timeout_s, latency_s, unanswered_s, MAX_SHARE)


def test_an_endpoint_not_heard_from_yet_gets_the_rounds_of_whole_timeouts_a_lease_holds() -> None:
    assert share(None) == PER_ENDPOINT
    assert share(None, timeout_s=5.0) == 2 * PER_ENDPOINT


def test_a_fast_endpoint_gets_up_to_the_process_wide_cap() -> None:
    assert share(0.002) == MAX_SHARE


def test_a_slow_endpoint_gets_the_rounds_its_latency_fits_in_a_lease() -> None:
    assert share(0.5) == 20 * PER_ENDPOINT
    assert share(2.0) == 5 * PER_ENDPOINT


def test_an_endpoint_gone_quiet_falls_back_to_whole_timeouts_whatever_its_history() -> None:
    assert share(0.002, unanswered_s=12.0) == PER_ENDPOINT


def test_an_endpoint_that_answers_instantly_still_has_a_finite_share() -> None:
    assert share(0.0) == MAX_SHARE


@given(
    per_endpoint=st.integers(1, 1000),
    lease_s=st.floats(1, 3600),
    timeout_s=st.floats(0.1, 600),
    latency_s=st.none() | st.floats(0, 3600),
    unanswered_s=st.floats(0, 86_400),
    max_share=st.integers(1, 100_000),
)
def test_the_share_is_never_below_one_round_of_timeouts_nor_above_the_cap_unless_that_round_is(
    per_endpoint: int,
    lease_s: float,
    timeout_s: float,
    latency_s: float | None,
    unanswered_s: float,
    max_share: int,
) -> None:
    floor = per_endpoint * max(1, int(lease_s // timeout_s))
    found = subscription_share(per_endpoint, lease_s, timeout_s, latency_s, unanswered_s, max_share)
    assert found >= floor
    assert found <= max(floor, max_share)


@given(
    latency_s=st.floats(0, 60),
    unanswered_s=st.floats(0, 60),
    longer_by=st.floats(0, 60),
)
def test_a_slower_endpoint_never_gets_a_larger_share(
    latency_s: float, unanswered_s: float, longer_by: float
) -> None:
    before = share(latency_s, unanswered_s)
    assert share(latency_s + longer_by, unanswered_s) <= before
    assert share(latency_s, unanswered_s + longer_by) <= before
    assert share(None) <= before


@pytest.mark.parametrize("latency_s", [0.001, 0.01, 0.1, 1.0, 10.0])
def test_a_share_is_whole_rounds_of_the_endpoints_concurrency(latency_s: float) -> None:
    assert share(latency_s) % PER_ENDPOINT == 0 or share(latency_s) == MAX_SHARE
