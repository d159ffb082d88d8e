"""A subscription's pace (service/domain/pacing.py): turns spaced so that requests started within
their lateness never exceed max_rps in any sliding second, where a delivery waits for its turn,
and how a sliding second is counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.pacing import (
    HOLD_S,
    MAX_LATENESS_S,
    MAX_RPS_MAX,
    MAX_RPS_MIN,
    PACE_MARGIN_S,
    SendAtTurn,
    TakeTurn,
    WaitInRow,
    latest_start,
    most_in_any_window,
    place_turn,
    turn_interval_s,
    turns_from,
)

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


def brute_force_most(moments: list[float], window_s: float) -> int:
    return max(
        (sum(0 <= other - start < window_s for other in moments) for start in moments),
        default=0,
    )


@pytest.mark.parametrize(
    ("moments", "expected"),
    [
        ([], 0),
        ([5.0], 1),
        ([0.0, 0.5, 0.99], 3),
        # A window is [t, t + 1): a moment exactly a second later falls in the next one.
        ([0.0, 1.0], 1),
        ([0.0, 0.999, 1.0, 1.5, 2.4], 3),
    ],
)
def test_the_most_in_any_sliding_second_counts_a_half_open_window(
    moments: list[float], expected: int
) -> None:
    assert most_in_any_window(moments) == expected


@given(st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), max_size=60))
def test_the_most_in_any_sliding_second_is_what_every_window_starting_at_a_moment_holds(
    moments: list[float],
) -> None:
    assert most_in_any_window(moments) == brute_force_most(moments, 1.0)


@given(st.integers(MAX_RPS_MIN, MAX_RPS_MAX))
def test_any_max_rps_plus_one_turns_in_a_row_span_more_than_a_second_by_the_margin(
    max_rps: int,
) -> None:
    span = max_rps * turn_interval_s(max_rps)
    assert span == pytest.approx(1.0 + PACE_MARGIN_S)


@given(
    max_rps=st.integers(MAX_RPS_MIN, 60),
    lateness=st.lists(st.floats(min_value=0, max_value=MAX_LATENESS_S), min_size=1, max_size=200),
    # What happens between a request's start and its arrival, within what the margin leaves.
    travel=st.lists(
        st.floats(min_value=0, max_value=PACE_MARGIN_S - MAX_LATENESS_S - 1e-6),
        min_size=1,
        max_size=200,
    ),
)
def test_requests_started_within_their_turns_never_exceed_max_rps_in_any_second(
    max_rps: int, lateness: list[float], travel: list[float]
) -> None:
    interval = turn_interval_s(max_rps)
    arrivals = [i * interval + late + travel[i % len(travel)] for i, late in enumerate(lateness)]
    assert most_in_any_window(arrivals) <= max_rps


def test_a_delivery_without_a_turn_takes_one() -> None:
    assert place_turn(None, NOW) == TakeTurn()


def test_a_turn_missed_by_more_than_the_lateness_is_taken_again() -> None:
    missed = NOW - timedelta(seconds=MAX_LATENESS_S * 2)
    assert place_turn(missed, NOW) == TakeTurn()


@pytest.mark.parametrize("ahead_s", [-MAX_LATENESS_S / 2, 0.0, 0.5, HOLD_S])
def test_a_near_turn_is_waited_for_in_the_worker(ahead_s: float) -> None:
    turn = NOW + timedelta(seconds=ahead_s)
    assert place_turn(turn, NOW) == SendAtTurn(turn)


def test_a_far_turn_is_waited_for_in_the_row_which_comes_due_the_hold_before_it() -> None:
    turn = NOW + timedelta(seconds=HOLD_S + 30)
    assert place_turn(turn, NOW) == WaitInRow(turn, turn - timedelta(seconds=HOLD_S))


def test_turns_follow_each_other_by_the_interval() -> None:
    assert turns_from(NOW, 0.5, 3) == [
        NOW,
        NOW + timedelta(seconds=0.5),
        NOW + timedelta(seconds=1.0),
    ]


def test_a_send_may_start_up_to_the_lateness_after_its_turn() -> None:
    assert latest_start(10.0) == 10.0 + MAX_LATENESS_S
