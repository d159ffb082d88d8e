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
  that heard any resets the count), the first of them old enough, mean an outage: the client's
  checks are polled as registered tasks, the waiting ones at once. Old enough: LATE_MARGIN_S
  past the latest a callback has recently come after the poll that found its answer (`late_s`,
  learnt: upstream does not say how long its callbacks take), at most LATE_CALLBACK_GRACE_S. A
  callback that comes late is heard after all and breaks the run; so a path whose callbacks
  come seconds after the answer teaches the wait with its first late ones. At a loss
  rate q, a false alarm needs q ** OUTAGE_MISSES (1 in 8,000 answers at 5%), and costs one early
  poll of each waiting check.
- During an outage `streak` counts the callbacks heard, late ones too: RECOVERY_HEARD of them
  end it (they can only come through the path that was broken; the misses of checks whose
  answers came during the break, still being found, do not delay the return).
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
# An outage: this many callback-carrying checks answered without their callback in a row, the
# first this much older than the latest late callback seen recently.
OUTAGE_MISSES = 3
LATE_MARGIN_S = 1.0
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
    # in a row) or its end (callbacks heard); `streak_age_s`: how long ago the run of misses began.
    outage: bool = False
    streak: int = 0
    streak_age_s: float = 0.0
    # The latest a callback has come after the poll that found its answer, recently (decays with
    # the counts): how long a run of misses waits before it is an outage.
    late_s: float = 0.0

    def __post_init__(self) -> None:
        if min(self.heard, self.missed, self.streak, self.streak_age_s, self.late_s) < 0:
            raise ValueError("callback counts are not negative")

    @property
    def late_wait_s(self) -> float:
        """How old a run of misses must be to be an outage: past the latest late callback seen
        recently (by LATE_MARGIN_S), never past LATE_CALLBACK_GRACE_S (later is lost anyway)."""
        return min(self.late_s + LATE_MARGIN_S, LATE_CALLBACK_GRACE_S)

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
        """The record `elapsed_s` later: both counts halve per `half_life_s`, the run of misses
        is that much older; the verdicts and the streak are kept (an outage ends on a callback
        heard, not on time passing)."""
        factor = decay_factor(elapsed_s, half_life_s)
        return replace(
            self,
            heard=self.heard * factor,
            missed=self.missed * factor,
            streak_age_s=self.streak_age_s + max(elapsed_s, 0.0),
            late_s=self.late_s * factor,
        )

    def after(
        self,
        heard: int | float,
        missed: int | float,
        tolerance: float,
        late_wait_s: float | None = None,
    ) -> CallbackRecord:
        """The record with `heard` and `missed` more completions (one write-back's), the outage
        and the loss share decided again. A run of misses is an outage only once its first miss
        is `late_wait_s` old (by default the record's own `late_wait_s`): a callback slower than
        the poll that found its answer comes by then (and counts as heard, `heard_late`)."""
        wait_s = self.late_wait_s if late_wait_s is None else late_wait_s
        if tolerance >= 1:  # callbacks always trusted: no outage either
            outage, streak, age = False, 0, 0.0
        else:
            outage, streak, age = outage_after(
                self.outage, self.streak, self.streak_age_s, heard, missed, wait_s
            )
        counted = replace(
            self,
            heard=self.heard + heard,
            missed=self.missed + (0 if self.outage else missed),
            outage=outage,
            streak=streak,
            streak_age_s=age,
        )
        return replace(counted, lossy=not still_trusted(counted, tolerance))

    def heard_late(self, lateness_s: float) -> CallbackRecord:
        """A callback that came `lateness_s` after the poll that found its answer (counted missed
        then): heard after all, for the share and for the outage (it breaks a run of misses, or
        counts towards an outage's end: the path works); runs of misses wait at least as long
        from now on."""
        outage, streak, age = outage_after(
            self.outage, self.streak, self.streak_age_s, 1, 0, LATE_CALLBACK_GRACE_S
        )
        return replace(
            self,
            heard=self.heard + 1,
            missed=max(self.missed - 1, 0.0),
            outage=outage,
            streak=streak,
            streak_age_s=age,
            late_s=max(self.late_s, min(max(lateness_s, 0.0), LATE_CALLBACK_GRACE_S)),
        )


def outage_after(
    outage: bool,
    streak: int,
    streak_age_s: float,
    heard: int | float,
    missed: int | float,
    late_wait_s: float,
) -> tuple[bool, int, float]:
    """The outage, its streak and the age of a run of misses after a batch of completions:
    `heard` with their callback, `missed` without; a run of OUTAGE_MISSES or more begun at least
    `late_wait_s` ago is an outage."""
    if heard < 0 or missed < 0 or late_wait_s < 0:
        raise ValueError("callback counts are not negative")
    if outage:
        streak += math.ceil(heard)
        return (False, 0, 0.0) if streak >= RECOVERY_HEARD else (True, streak, 0.0)
    if heard > 0:
        return False, 0, 0.0
    if streak == 0:
        streak_age_s = 0.0  # the run begins with this batch
    streak += math.ceil(missed)
    if streak >= OUTAGE_MISSES and streak_age_s >= late_wait_s:
        return True, 0, 0.0
    return False, streak, streak_age_s


def still_trusted(record: CallbackRecord, tolerance: float) -> bool:
    """The loss share's verdict given `record` (its `lossy` is the verdict so far): whether the
    share of missed callbacks is tolerated."""
    if not 0 <= tolerance <= 1:
        raise ValueError("tolerance must be in [0, 1]")
    share = record.missed_share
    if not record.lossy:
        return not (record.missed >= MIN_MISSED_TO_DISTRUST and share > tolerance)
    return share <= tolerance / 2
