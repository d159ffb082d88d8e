"""Whether a client's upstream callbacks can be trusted to arrive, learnt from what they did.

A check submitted with a callback can be polled sparsely (a safety net) only while its callback
is expected: a lost callback and a late answer look the same until a poll looks. So phonebridge
keeps count, per client, of the callback-carrying checks that completed: *heard* when a callback
had arrived by the poll that found the answer (or arrived just after it: a late hint), *missed*
when none came. Counts halve every HALF_LIFE_S, so the record follows the path between upstream
and this API within minutes when it breaks or heals (at a steady 20% loss, trust goes in about
four minutes; once callbacks arrive again, it comes back within half an hour).

- Trusted (the default, and while few callbacks go missing): the safety net polls where the
  answer is almost surely there (service/domain/schedule.py, `safety_net_delay`), so a check
  costs its submit, the hinted poll and rarely more.
- Untrusted (more than `tolerance` of the recent callbacks missed, and at least
  MIN_MISSED_TO_DISTRUST of them): the client's checks are polled on the normal schedule, exactly
  as registered tasks, so a lost callback costs no more lag than polling alone would; the hints
  that do arrive still make the answer near-instant.
- Trust comes back when the missed share falls below half the tolerance (hysteresis: a share
  hovering at the tolerance does not flip the schedule back and forth).

The share judges a loss *rate*, and it is slow by design: against the hundreds of recent heard
callbacks of a busy client, a 5% share takes minutes of misses to reach, and the misses of a long
break keep trust away for most of an hour after it healed. The break that happens in production
is not a rate: the public callback URL becomes unreachable (ingress down, a certificate, a
firewall) and from one moment every callback is lost. A second, fast rule watches for that, an
*outage*:

- Outside an outage, `streak` counts the callback-carrying checks answered without their
  callback since the last one heard. OUTAGE_MISSES in a row (no heard one between, a batch
  that heard any resets the count) mean an outage: the client's checks are polled as registered
  tasks, the waiting ones at once. At a loss rate q, a false alarm needs q ** OUTAGE_MISSES (1 in
  8,000 answers at 5%), and costs one early poll of each waiting check.
- During an outage `streak` counts the callbacks heard: RECOVERY_HEARD of them end it (they can
  only come through the path that was broken; the misses of checks whose answers came during the
  break, still being found, do not delay the return).
- The misses counted during an outage are explained by it: they do not enter the loss share, so
  the share says after the outage what it said before it (a path that breaks and heals is not a
  lossy one). The misses that revealed it do count.

`trusted` (the net is relied on) is neither: not `lossy` (the share's verdict) and no outage.

Pure: elapsed times, the half-life and the tolerance are parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from service.domain.completion import decay_factor

# A handful of misses is not a pattern: below this many (decayed), trust is never withdrawn.
# Three recent misses count for a little less than 3 once decayed, hence the half.
MIN_MISSED_TO_DISTRUST = 2.5
DEFAULT_LOSS_TOLERANCE = 0.05
# Much shorter than the completion estimate's: a broken path must stop being trusted quickly.
HALF_LIFE_S = 600.0
# A callback this soon after a poll found its answer was late, not lost: it counts as heard.
# Later than that, the path is too slow for the safety net to wait on, and it stays missed.
LATE_CALLBACK_GRACE_S = 10.0
# An outage: this many callback-carrying checks answered without their callback in a row.
OUTAGE_MISSES = 3
# Its end: this many callbacks heard since it began.
RECOVERY_HEARD = 2


@dataclass(frozen=True)
class CallbackRecord:
    """What one client's callbacks have done, as of one moment."""

    heard: float = 0.0
    missed: float = 0.0
    # The loss share's verdict: more of the recent callbacks missed than tolerated.
    lossy: bool = False
    # Every callback lost from one moment on (see above), and the count towards its start (misses
    # in a row) or its end (callbacks heard).
    outage: bool = False
    streak: int = 0

    def __post_init__(self) -> None:
        if self.heard < 0 or self.missed < 0 or self.streak < 0:
            raise ValueError("callback counts are not negative")

    @property
    def trusted(self) -> bool:
        """Whether the client's checks with callbacks are left to their sparse safety net."""
        return not self.lossy and not self.outage

    @property
    def missed_share(self) -> float:
        """The share of recent callback-carrying completions that no callback announced."""
        total = self.heard + self.missed
        return self.missed / total if total > 0 else 0.0

    def decayed(self, elapsed_s: float, half_life_s: float) -> CallbackRecord:
        """The record `elapsed_s` later: both counts halve per `half_life_s`; the verdicts and
        the streak are kept (an outage ends on a callback heard, not on time passing)."""
        factor = decay_factor(elapsed_s, half_life_s)
        return replace(self, heard=self.heard * factor, missed=self.missed * factor)

    def after(self, heard: int | float, missed: int | float, tolerance: float) -> CallbackRecord:
        """The record with `heard` and `missed` more completions (one write-back's), the outage
        and the loss share decided again."""
        outage, streak = outage_after(self.outage, self.streak, heard, missed)
        if tolerance >= 1:  # callbacks always trusted: no outage either
            outage, streak = False, 0
        counted = replace(
            self,
            heard=self.heard + heard,
            missed=self.missed + (0 if self.outage else missed),
            outage=outage,
            streak=streak,
        )
        return replace(counted, lossy=not still_trusted(counted, tolerance))


def outage_after(
    outage: bool, streak: int, heard: int | float, missed: int | float
) -> tuple[bool, int]:
    """The outage and its streak after a batch of completions: `heard` with their callback,
    `missed` without."""
    if heard < 0 or missed < 0:
        raise ValueError("callback counts are not negative")
    if outage:
        streak += math.ceil(heard)
        return (False, 0) if streak >= RECOVERY_HEARD else (True, streak)
    if heard > 0:
        return False, 0
    streak += math.ceil(missed)
    return (True, 0) if streak >= OUTAGE_MISSES else (False, streak)


def still_trusted(record: CallbackRecord, tolerance: float) -> bool:
    """The loss share's verdict given `record` (its `lossy` is the verdict so far): whether the
    share of missed callbacks is tolerated."""
    if not 0 <= tolerance <= 1:
        raise ValueError("tolerance must be in [0, 1]")
    share = record.missed_share
    if not record.lossy:
        return not (record.missed >= MIN_MISSED_TO_DISTRUST and share > tolerance)
    return share <= tolerance / 2
