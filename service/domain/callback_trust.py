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

Pure: elapsed times, the half-life and the tolerance are parameters.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class CallbackRecord:
    """What one client's callbacks have done, as of one moment."""

    heard: float = 0.0
    missed: float = 0.0
    trusted: bool = True

    def __post_init__(self) -> None:
        if self.heard < 0 or self.missed < 0:
            raise ValueError("callback counts are not negative")

    @property
    def missed_share(self) -> float:
        """The share of recent callback-carrying completions that no callback announced."""
        total = self.heard + self.missed
        return self.missed / total if total > 0 else 0.0

    def decayed(self, elapsed_s: float, half_life_s: float) -> CallbackRecord:
        """The record `elapsed_s` later: both counts halve per `half_life_s`; trust is kept."""
        factor = decay_factor(elapsed_s, half_life_s)
        return replace(self, heard=self.heard * factor, missed=self.missed * factor)

    def after(self, heard: float, missed: float, tolerance: float) -> CallbackRecord:
        """The record with `heard` and `missed` more completions, and trust decided again."""
        counted = replace(self, heard=self.heard + heard, missed=self.missed + missed)
        return replace(counted, trusted=still_trusted(counted, tolerance))


def still_trusted(record: CallbackRecord, tolerance: float) -> bool:
    """Whether callbacks are trusted given `record` (its `trusted` is the state so far)."""
    if not 0 <= tolerance <= 1:
        raise ValueError("tolerance must be in [0, 1]")
    share = record.missed_share
    if record.trusted:
        return not (record.missed >= MIN_MISSED_TO_DISTRUST and share > tolerance)
    return share <= tolerance / 2
