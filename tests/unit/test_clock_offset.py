"""Where Redis's clock stands against ours (service/domain/clock_offset.py): one read bounds the
offset by its round trip; the reads of the window narrow it to the fastest round trip and always
hold the true offset; old reads are forgotten; a stepped clock keeps only the newest read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.clock_offset import WINDOW_S, ClockOffset, OffsetBounds

OFFSET = 1_765_000_000.25  # Redis's epoch seconds against a monotonic clock


def read(clock: ClockOffset, sent: float, out_s: float, back_s: float) -> OffsetBounds:
    """A round trip sent at `sent`, read by Redis `out_s` later, back `back_s` after that."""
    return clock.observe(sent, sent + out_s + back_s, sent + out_s + OFFSET)


def test_one_read_bounds_the_offset_by_its_round_trip() -> None:
    bounds = read(ClockOffset(), 10.0, 0.004, 0.006)

    assert bounds.low == pytest.approx(OFFSET - 0.006)
    assert bounds.high == pytest.approx(OFFSET + 0.004)
    assert bounds.width == pytest.approx(0.010)


def test_a_slow_read_after_a_fast_one_keeps_the_fast_ones_precision() -> None:
    clock = ClockOffset()
    read(clock, 10.0, 0.0005, 0.0005)

    bounds = read(clock, 10.5, 0.001, 0.060)  # its reply reached a busy loop 60 ms late

    assert bounds.low <= OFFSET <= bounds.high
    assert bounds.width <= 0.001 + 1e-9


def test_reads_older_than_the_window_are_forgotten() -> None:
    clock = ClockOffset()
    read(clock, 10.0, 0.0005, 0.0005)

    bounds = read(clock, 10.0 + WINDOW_S + 1, 0.010, 0.010)

    assert bounds.width == pytest.approx(0.020)


def test_a_stepped_clock_keeps_only_the_newest_read() -> None:
    clock = ClockOffset()
    read(clock, 10.0, 0.0005, 0.0005)
    stepped_remote = 11.0 + 0.002 + OFFSET + 1.0  # Redis's clock jumped a second ahead

    bounds = clock.observe(11.0, 11.004, stepped_remote)

    assert bounds == OffsetBounds(stepped_remote - 11.004, stepped_remote - 11.0)


def test_a_read_received_before_it_was_sent_is_refused() -> None:
    with pytest.raises(ValueError, match="before it is sent"):
        ClockOffset().observe(2.0, 1.0, 5.0)


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=2.0),  # time since the previous read was sent
            st.floats(min_value=0.0, max_value=0.05),  # out to Redis
            st.floats(min_value=0.0, max_value=0.2),  # back, perhaps to a busy loop
        ),
        min_size=1,
        max_size=40,
    )
)
def test_the_bounds_always_hold_the_true_offset_as_narrow_as_the_fastest_recent_read(
    trips: list[tuple[float, float, float]],
) -> None:
    clock = ClockOffset()
    sent = 100.0
    recent: list[tuple[float, float]] = []  # (received, round trip) of each read
    for gap, out_s, back_s in trips:
        sent += gap
        bounds = read(clock, sent, out_s, back_s)
        received = sent + out_s + back_s
        recent = [(at, rtt) for at, rtt in recent if at >= received - WINDOW_S]
        recent.append((received, out_s + back_s))

        assert bounds.low - 1e-6 <= OFFSET <= bounds.high + 1e-6
        assert bounds.width <= min(rtt for _, rtt in recent) + 1e-6
