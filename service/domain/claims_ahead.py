"""How many scheduled submits (check job items, re-checks) the scheduler may hold claimed ahead of
the workers: claimed, leased, and not yet begun (`submitting`) or handed back.

The claims timeline (service/upstream/ratelimit.py) paces claims at the ceiling's rate, which
assumes each claim turns into a call soon after. A job's submits cannot: every item's answer is
polled too, so they get about half the ceiling, and a worker sends them only as fast as it may
hold items marked (service/engine/slot_sends.py). Claimed at the rate the claims timeline allowed,
they piled up in the worker (15-27 batches, about 800 items, at bench/jobs.py part (a)'s 200
calls/s) until their leases ran out before their turn: one group of items in ten found none of
them still its own, each item's row was written 3.23 times instead of 3 (its claim, its mark,
its answer), and the claims spent on them were calls the ceiling never made.

So the scheduler claims a submit only while fewer than CLAIMED_AHEAD_S of the ceiling's calls are
claimed and unsent: enough for the workers never to wait for a tick's claim, and sent well within
their lease (a quarter of it at most, however short the lease is set).
"""

from __future__ import annotations

import math

# The submits claimed and unsent at most: this many seconds of the ceiling's calls...
CLAIMED_AHEAD_S = 1.0
# ...and never more than the calls of this share of a lease.
LEASE_SHARE = 0.25


def submit_claim_room(claimed_unsent: int, max_rps: float, lease_s: float) -> int:
    """How many more submits may be claimed now, with `claimed_unsent` claimed and not yet begun
    or handed back, at a ceiling of `max_rps` calls a second and a claim lease of `lease_s`. At
    least one may always be held claimed, so a slow ceiling still progresses."""
    ahead_s = min(CLAIMED_AHEAD_S, lease_s * LEASE_SHARE)
    most = max(1, math.floor(max_rps * ahead_s))
    return max(0, most - claimed_unsent)
