"""When phonebridge analyzes a busy table itself (service/domain/table_statistics.py): past twice
autovacuum's default threshold, with a floor that leaves small tables to autovacuum."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.domain.table_statistics import (
    ANALYZE_CHANGED_SHARE,
    ANALYZE_MIN_CHANGES,
    needs_analyze,
)


def test_a_table_changed_past_twice_autovacuums_threshold_is_analyzed() -> None:
    # 20,000 rows: autovacuum (50 + 10%) would have analyzed it at 2,050 changes.
    assert not needs_analyze(20_000, 4_499)
    assert needs_analyze(20_000, 4_500)


def test_a_new_table_is_analyzed_once_it_has_grown_past_the_floor() -> None:
    # A table never analyzed counts every row it holds as changed.
    assert not needs_analyze(499, 499)
    assert needs_analyze(700, 700)
    assert needs_analyze(0, ANALYZE_MIN_CHANGES)


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=10**9))
def test_more_changes_never_analyze_less(rows: int, changed: int) -> None:
    if needs_analyze(rows, changed):
        assert needs_analyze(rows, changed + 1)
    assert needs_analyze(rows, changed) == (
        changed >= ANALYZE_MIN_CHANGES + ANALYZE_CHANGED_SHARE * rows
    )
