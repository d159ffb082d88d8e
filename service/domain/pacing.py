"""A subscription's pace: at most `max_rps` webhook requests in any sliding second, across every
worker, for a subscription that sets it.

Each request to a paced subscription takes a *turn* on the subscription's shared timeline
(service/webhooks/pacing.py keeps it in Redis). Turns are spaced `turn_interval_s` apart, so any
`max_rps + 1` turns in a row span at least 1 + PACE_MARGIN_S seconds; a request starts at its
turn, never before it, and never later than MAX_LATENESS_S after it (a send that would start
later takes a new turn instead). The margin left over covers what happens between a request's
start and its arrival (the connection, the receiver's own loop), so a receiver that counts
arrivals sees at most `max_rps` in any second.

Waiting for a turn is not an attempt: a delivery whose turn is near (within HOLD_S) waits for it
in the worker, under its lease; one whose turn is further off goes back to its row with the turn
written down (`deliveries.turn_at`) and comes due HOLD_S before it. A burst of 10,000 results to
an endpoint paced at 50/s is thus spread over its rows, not held in a worker, and a worker that
dies while a delivery waits loses nothing: the lease brings the delivery back, and it takes a new
turn if it missed its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

# Any max_rps + 1 consecutive turns span at least one second plus this.
PACE_MARGIN_S = 0.1
# A send that would start later than this after its turn does not use it (it could land within
# the same second as the turns after it).
MAX_LATENESS_S = 0.04
# A delivery whose turn is at most this far off waits for it in the worker; a later turn is
# written to the delivery's row, which comes due this long before it.
HOLD_S = 2.0
# A new turn is at least this far ahead: the worker writes back the rest of its batch, loads the
# delivery and signs it meanwhile (on a loaded machine those round trips took longer than the
# lateness allowed, and the first turns of a batch were missed).
TURN_LEAD_S = 0.2
# The contract's bounds of a subscription's max_rps.
MAX_RPS_MIN = 1
MAX_RPS_MAX = 1000


def turn_interval_s(max_rps: int) -> float:
    """The time between two turns of a subscription paced at `max_rps` requests a second."""
    return (1.0 + PACE_MARGIN_S) / max_rps


def turns_from(first_at: datetime, interval_s: float, count: int) -> list[datetime]:
    """`count` consecutive turns, the first at `first_at`."""
    return [first_at + timedelta(seconds=i * interval_s) for i in range(count)]


@dataclass(frozen=True)
class SendAtTurn:
    """The turn is near: the worker holds the delivery and sends it at `at`."""

    at: datetime


@dataclass(frozen=True)
class WaitInRow:
    """The turn is far off: the delivery goes back to its row, holding the turn, due at `due_at`."""

    turn_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class TakeTurn:
    """The delivery has no turn, or missed the one it had: it takes the next free one."""


TurnPlace = SendAtTurn | WaitInRow | TakeTurn


def place_turn(turn_at: datetime | None, now: datetime) -> TurnPlace:
    """Where a delivery with this turn (None: none yet) waits for it, as of `now`."""
    if turn_at is None or turn_at < now - timedelta(seconds=MAX_LATENESS_S):
        return TakeTurn()
    if turn_at - now <= timedelta(seconds=HOLD_S):
        return SendAtTurn(turn_at)
    return WaitInRow(turn_at, turn_at - timedelta(seconds=HOLD_S))


def latest_start(turn_s: float) -> float:
    """The last moment a send may start for its turn at `turn_s` (same clock); later, it could
    land within the same second as the turns after it."""
    return turn_s + MAX_LATENESS_S


def most_in_any_window(moments: Iterable[float], window_s: float = 1.0) -> int:
    """The most of `moments` (seconds) that fall within one sliding window [t, t + window_s): what
    "never more than max_rps in any sliding second" bounds, as a receiver counts arrivals."""
    ordered = sorted(moments)
    most = 0
    start = 0
    for end, moment in enumerate(ordered):
        # The window that starts at ordered[start] and holds `moment`: within window_s of it.
        while moment - ordered[start] >= window_s:
            start += 1
        most = max(most, end - start + 1)
    return most
