"""The room the scheduler has to claim scheduled submits ahead of the workers
(service/domain/claims_ahead.py): a second of the ceiling's calls, never more than a quarter of
a lease's, always at least one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.domain.claims_ahead import CLAIMED_AHEAD_S, LEASE_SHARE, submit_claim_room


def test_a_second_of_the_ceiling_may_be_claimed_ahead_and_no_more() -> None:
    assert submit_claim_room(0, 200.0, 10.0) == 200
    assert submit_claim_room(150, 200.0, 10.0) == 50
    assert submit_claim_room(200, 200.0, 10.0) == 0
    assert submit_claim_room(260, 200.0, 10.0) == 0


def test_a_short_lease_holds_fewer_claimed() -> None:
    # A quarter of a 2 s lease: half a second of the ceiling.
    assert submit_claim_room(0, 200.0, 2.0) == 100
    assert submit_claim_room(0, 25.0, 0.4) == 2


def test_a_slow_ceiling_still_holds_one_claimed() -> None:
    assert submit_claim_room(0, 0.5, 10.0) == 1
    assert submit_claim_room(1, 0.5, 10.0) == 0


@given(
    claimed=st.integers(min_value=0, max_value=100_000),
    max_rps=st.floats(min_value=0.01, max_value=100_000.0),
    lease_s=st.floats(min_value=0.01, max_value=3600.0),
)
def test_claimed_and_room_together_never_pass_the_bound(
    claimed: int, max_rps: float, lease_s: float
) -> None:
    room = submit_claim_room(claimed, max_rps, lease_s)
    most = max(1, int(max_rps * min(CLAIMED_AHEAD_S, lease_s * LEASE_SHARE)))
    assert room >= 0
    assert claimed + room == max(claimed, most)
