"""How old a running job's counts may be when its client reads them (service/features/job_counts.py
keeps them between reads).

Counting a running job reads each of its items with its task: about 60 ms at 20,000 items and
230 ms at 100,000 on this 2-core machine (bench/jobs.py part v), more under load. Its client
watches it while it runs: `phonebridge check-file` reads it every second, the portal's page
refreshes itself, a script may read it every half second, and a page of `GET /v1/check-jobs`
counts every running job on it. Counted at every read, one watcher of a 20,000-item job reading
twice a second (as bench/jobs.py part (a) does) cost PostgreSQL 1.7 ms of CPU per item the job
checked, a fifth of all it spent (8.1 against 6.4 ms, back to back), and the job ran 6% slower;
a few watchers of a large job would keep a PostgreSQL backend busy.

So a count is shown again until it is COUNT_TIME_MULTIPLE times as old as it took to make:
counting then takes at most a tenth of one backend's time per watched job, whatever its size and
however many watch it. It is never shown younger than MIN_AGE_S (a progress bar needs no more)
nor older than MAX_AGE_S. A change of the job's status (a start, pause, resume or cancel, by its
client or the system) makes a count stale at once: a client that moved its job sees what the move
did.
"""

from __future__ import annotations

COUNT_TIME_MULTIPLE = 10.0
MIN_AGE_S = 1.0
MAX_AGE_S = 10.0


def shown_for_s(counting_s: float) -> float:
    """How long a count that took `counting_s` to make is shown again."""
    return min(MAX_AGE_S, max(MIN_AGE_S, COUNT_TIME_MULTIPLE * counting_s))
