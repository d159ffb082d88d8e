"""What a check job submits (service.domain.job_plan): duplicates found by digest, and the
arithmetic of its counts."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.job_input import ItemRejection, JobItem, JobOptions, JobRequest
from service.domain.job_plan import (
    VERDICTS,
    DedupePlan,
    JobCounts,
    PlannedItem,
    counts_fixed_once_finished,
    counts_with_progress,
    plan_dedupe,
    planned_counts,
)
from service.domain.states import TaskState

KEY = b"derived from PHONEBRIDGE_SECRET_KEY"


def digest(number: str) -> bytes:
    return hmac.new(KEY, number.encode(), hashlib.sha256).digest()


def job_of(numbers: list[str], rejected: int = 0) -> JobRequest:
    return JobRequest(
        options=JobOptions(),
        items=tuple(JobItem(line, number, None, "{}") for line, number in enumerate(numbers, 1)),
        rejections=tuple(
            ItemRejection(len(numbers) + n, None, "phone_number: bad")
            for n in range(1, rejected + 1)
        ),
    )


def test_a_repeated_number_points_to_its_first_line() -> None:
    job = job_of(["521", "522", "521", "521", "522", "523"])
    plan = plan_dedupe(job.items, digest)
    assert [(item.line, item.first_line) for item in plan.items] == [
        (1, None),
        (2, None),
        (3, 1),
        (4, 1),
        (5, 2),
        (6, None),
    ]
    assert plan.duplicates == 3
    assert [item.line for item in plan.first_occurrences()] == [1, 2, 6]


def test_the_plan_holds_digests_never_numbers() -> None:
    plan = plan_dedupe(job_of(["525512345678"]).items, digest)
    assert plan.items == (PlannedItem(1, digest("525512345678"), None),)
    assert b"525512345678" not in plan.items[0].digest


def test_numbers_are_told_apart_by_the_digest_the_caller_gives() -> None:
    # A digest that cannot tell numbers apart makes every later item a duplicate: the plan
    # trusts the digest, so the caller's must be the keyed digest of the normalised number.
    plan = plan_dedupe(job_of(["521", "522"]).items, lambda number: b"same")
    assert plan.duplicates == 1


@given(st.lists(st.sampled_from(["521", "522", "523", "524"]), min_size=1, max_size=60))
def test_each_number_is_checked_once_and_every_duplicate_points_to_its_first_occurrence(
    numbers: list[str],
) -> None:
    plan = plan_dedupe(job_of(numbers).items, digest)
    firsts = list(plan.first_occurrences())
    assert len(firsts) == len(set(numbers))
    assert plan.duplicates == len(numbers) - len(set(numbers))
    for item in plan.items:
        number = numbers[item.line - 1]
        assert item.is_duplicate == (item.first_line is not None)
        expected_first = numbers.index(number) + 1
        assert item.first_line == (None if expected_first == item.line else expected_first)


def test_the_counts_of_a_new_job_say_what_it_will_submit() -> None:
    job = job_of(["521", "522", "521", "523", "523"], rejected=2)
    counts = planned_counts(job, plan_dedupe(job.items, digest), cached=1)
    assert counts == JobCounts(items=7, rejected=2, duplicates=2, cached=1)
    assert counts.to_submit == 2
    assert counts.left_to_submit == 2
    assert not counts.all_final


def test_the_counts_as_the_contract_shows_them() -> None:
    counts = JobCounts(
        items=100_000,
        rejected=12,
        duplicates=340,
        cached=2000,
        submitted=5000,
        pending=310,
        completed=4600,
        failed=90,
        expired=0,
        by_verdict={"live": 3000, "unreachable": 900, "dead": 600, "retry": 100},
    )
    assert counts.as_json() == {
        "items": 100000,
        "rejected": 12,
        "duplicates": 340,
        "cached": 2000,
        "to_submit": 97648,
        "submitted": 5000,
        "pending": 310,
        "completed": 4600,
        "failed": 90,
        "expired": 0,
        "by_verdict": {"live": 3000, "unreachable": 900, "dead": 600, "retry": 100},
    }


def test_every_verdict_is_shown_even_when_no_row_got_it() -> None:
    counts = JobCounts(items=1, rejected=0, duplicates=0, cached=0)
    assert counts.as_json()["by_verdict"] == {"live": 0, "unreachable": 0, "dead": 0, "retry": 0}


@given(
    numbers=st.lists(st.sampled_from(["521", "522", "523", "524", "525"]), min_size=1, max_size=40),
    rejected=st.integers(0, 10),
    data=st.data(),
)
def test_to_submit_is_items_less_rejected_duplicates_and_cached(
    numbers: list[str], rejected: int, data: st.DataObject
) -> None:
    job = job_of(numbers, rejected)
    plan = plan_dedupe(job.items, digest)
    firsts = len(list(plan.first_occurrences()))
    cached = data.draw(st.integers(0, firsts))
    counts = planned_counts(job, plan, cached=cached)
    assert counts.items == len(numbers) + rejected
    assert counts.to_submit == counts.items - counts.rejected - counts.duplicates - counts.cached
    assert counts.to_submit == firsts - cached
    assert counts.to_submit >= 0


def test_more_cached_than_first_occurrences_is_a_bug_not_a_count() -> None:
    job = job_of(["521", "521"])
    with pytest.raises(ValueError, match="cached"):
        planned_counts(job, plan_dedupe(job.items, digest), cached=2)


def test_counts_that_would_make_to_submit_negative_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="cannot be"):
        JobCounts(items=3, rejected=2, duplicates=1, cached=1)


def test_progress_counts_the_submitted_items_by_state_and_every_result_row_by_verdict() -> None:
    planned = JobCounts(items=10, rejected=1, duplicates=2, cached=2)  # to_submit 5
    counts = counts_with_progress(
        planned,
        {TaskState.PENDING: 1, TaskState.COMPLETED: 2, TaskState.FAILED: 1},
        # 2 completed + 2 cached + 2 duplicates of answered rows; 4 rows have no verdict yet.
        {"live": 3, "dead": 2, "retry": 1, None: 3},
    )
    assert counts.submitted == 4
    assert (counts.pending, counts.completed, counts.failed, counts.expired) == (1, 2, 1, 0)
    assert counts.by_verdict == {"live": 3, "unreachable": 0, "dead": 2, "retry": 1}
    assert counts.left_to_submit == 1
    assert not counts.all_final


def test_a_task_its_client_cancelled_is_submitted_but_in_no_other_count() -> None:
    planned = JobCounts(items=2, rejected=0, duplicates=0, cached=0)
    counts = counts_with_progress(
        planned, {TaskState.COMPLETED: 1, TaskState.CANCELLED: 1}, {"live": 1}
    )
    assert counts.submitted == 2
    assert counts.pending + counts.completed + counts.failed + counts.expired == 1
    assert counts.all_final


def test_all_final_when_everything_is_submitted_and_nothing_pending() -> None:
    planned = JobCounts(items=3, rejected=0, duplicates=1, cached=0)
    assert not counts_with_progress(planned, {TaskState.COMPLETED: 1}, {}).all_final
    assert not counts_with_progress(
        planned, {TaskState.COMPLETED: 1, TaskState.PENDING: 1}, {}
    ).all_final
    assert counts_with_progress(
        planned, {TaskState.COMPLETED: 1, TaskState.EXPIRED: 1}, {}
    ).all_final


def test_a_job_with_nothing_to_submit_is_all_final_at_once() -> None:
    assert JobCounts(items=2, rejected=1, duplicates=0, cached=1).all_final


def test_more_submitted_than_to_submit_is_a_bug_not_a_count() -> None:
    planned = JobCounts(items=2, rejected=0, duplicates=1, cached=0)
    with pytest.raises(ValueError, match="submitted"):
        counts_with_progress(planned, {TaskState.PENDING: 2}, {})


def test_an_empty_plan_has_no_duplicates() -> None:
    assert plan_dedupe((), digest) == DedupePlan(items=(), duplicates=0)


def test_by_verdict_has_the_contracts_verdicts_in_order() -> None:
    counts = counts_with_progress(
        JobCounts(items=1, rejected=0, duplicates=0, cached=0), {}, {"retry": 1, "dead": 1}
    )
    assert tuple(counts.by_verdict) == VERDICTS


@given(
    planned=st.tuples(*[st.integers(0, 50)] * 3).map(
        lambda parts: JobCounts(
            items=sum(parts) + 2 * len(TaskState),
            rejected=parts[0],
            duplicates=parts[1],
            cached=parts[2],
        )
    ),
    states=st.dictionaries(st.sampled_from(list(TaskState)), st.integers(0, 2)),
    verdicts=st.dictionaries(st.sampled_from([*VERDICTS, None]), st.integers(0, 80)),
)
def test_a_finished_jobs_kept_progress_gives_back_its_counts(
    planned: JobCounts, states: dict[TaskState, int], verdicts: dict[str | None, int]
) -> None:
    counts = counts_with_progress(planned, states, verdicts)
    kept = counts.progress_json()
    assert set(kept) == {"submitted", "pending", "completed", "failed", "expired", "by_verdict"}
    assert planned.with_progress(kept) == counts
    assert planned.with_progress(kept).as_json() == counts.as_json()


def test_only_a_job_without_re_checks_or_cached_rows_has_counts_fixed_once_finished() -> None:
    plain = JobCounts(items=5, rejected=1, duplicates=2, cached=0)
    cached = JobCounts(items=5, rejected=1, duplicates=2, cached=1)
    assert counts_fixed_once_finished(plain, rechecked=False)
    assert not counts_fixed_once_finished(plain, rechecked=True)
    assert not counts_fixed_once_finished(cached, rechecked=False)
    assert not counts_fixed_once_finished(cached, rechecked=True)
