"""When phonebridge analyzes one of its busiest tables itself: when PostgreSQL has not, long after
autovacuum would have (service/engine/table_statistics.py runs it).

PostgreSQL plans a statement from its tables' statistics, and a connection keeps the generic plan
of a prepared statement until a table it reads is analyzed again. A plan made while `tasks` held
a few rows is kept as it grows: a callback hint (service/store/callback_hints.py) prepared then
reached its task through an index of every pending task, 10.3 ms a hint once the table held
20,000 tasks, against 0.3 ms with a plan made at that size (the same statement). In
bench/jobs.py part (a), on a PostgreSQL without autovacuum (this machine's), hints averaged
4.3 ms and took the largest share of PostgreSQL's time.

Autovacuum analyzes a table once 50 + 10% of its rows changed (PostgreSQL's defaults), within its
naptime (a minute). A table changed by ANALYZE_MIN_CHANGES + ANALYZE_CHANGED_SHARE of its rows
since it was last analyzed is one autovacuum is not keeping up with (it is off, or far behind):
phonebridge analyzes it then, and never otherwise.
"""

from __future__ import annotations

# Twice autovacuum's default threshold (autovacuum_analyze_threshold = 50,
# autovacuum_analyze_scale_factor = 0.1), with a floor that keeps small tables to autovacuum.
ANALYZE_MIN_CHANGES = 500
ANALYZE_CHANGED_SHARE = 0.2


def needs_analyze(rows: int, changed_since_analyze: int) -> bool:
    """Whether a table of about `rows` live rows, `changed_since_analyze` rows inserted, updated or
    deleted since it was last analyzed, is past what autovacuum would have let it reach."""
    return changed_since_analyze >= ANALYZE_MIN_CHANGES + ANALYZE_CHANGED_SHARE * max(rows, 0)
