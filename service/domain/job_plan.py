"""What a check job will submit, and the arithmetic of its counts.

Pure. The dedupe plan recognises a number by its keyed digest (the caller passes the digest
function: an HMAC with a key derived from `PHONEBRIDGE_SECRET_KEY`), never by the number itself,
so the plan holds no number in clear.

The rules (the contract's "Lists of numbers: check jobs"):
- Within a job, the first item with a number is its first occurrence; every later item with the
  same number (after normalisation, so equal digests) is a duplicate of that first item: it is
  never submitted, counts in `duplicates`, and gets the first item's answer in the results.
- A first occurrence that this client's recent final answer can answer (`max_age_s`; the store
  finds them by digest) is `cached`. Its duplicates stay `duplicates`, never `cached`, so no item
  is counted twice.
- `to_submit` = `items` - `rejected` - `duplicates` - `cached`: what the job will cost in
  submits (re-checks aside), shown on a draft before anything is spent.
- Progress counts only the items that were submitted: `submitted` = `pending` + `completed` +
  `failed` + `expired` (+ any task its client cancelled, which no count shows).
- `by_verdict` counts result rows, duplicates and cached ones included, by the verdict they got;
  every verdict is shown, 0 when none got it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from service.domain.job_input import JobItem, JobRequest
from service.domain.states import TaskState
from service.domain.verdicts import Verdict

# The keyed digest of a normalised number.
NumberDigest = Callable[[str], bytes]


# What `counts.by_verdict` counts, in the contract's order.
VERDICTS = tuple(verdict.value for verdict in Verdict)


@dataclass(frozen=True, slots=True)
class PlannedItem:
    """An accepted item with its number's digest; `first_line` is the line of the item whose
    answer it shares, or None for a first occurrence."""

    line: int
    digest: bytes
    first_line: int | None

    @property
    def is_duplicate(self) -> bool:
        return self.first_line is not None


@dataclass(frozen=True, slots=True)
class DedupePlan:
    """Every accepted item, in input order, as first occurrence or duplicate."""

    items: tuple[PlannedItem, ...]
    duplicates: int

    def first_occurrences(self) -> Iterator[PlannedItem]:
        """The items that are checked (or answered from an earlier check), in input order."""
        return (item for item in self.items if item.first_line is None)


def plan_dedupe(items: Sequence[JobItem], digest: NumberDigest) -> DedupePlan:
    """Which items are first occurrences and which duplicates point to which first line."""
    first_line_of: dict[bytes, int] = {}
    planned: list[PlannedItem] = []
    for item in items:
        number_digest = digest(item.phone_number)
        first_line = first_line_of.setdefault(number_digest, item.line)
        planned.append(
            PlannedItem(item.line, number_digest, None if first_line == item.line else first_line)
        )
    return DedupePlan(items=tuple(planned), duplicates=len(planned) - len(first_line_of))


@dataclass(frozen=True, slots=True)
class JobCounts:
    """A job's `counts`, as the contract shows them."""

    items: int
    rejected: int
    duplicates: int
    cached: int
    submitted: int = 0
    pending: int = 0
    completed: int = 0
    failed: int = 0
    expired: int = 0
    by_verdict: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))

    def __post_init__(self) -> None:
        if min(self.items, self.rejected, self.duplicates, self.cached) < 0 or self.to_submit < 0:
            raise ValueError(f"counts that cannot be: {self}")

    @property
    def to_submit(self) -> int:
        return self.items - self.rejected - self.duplicates - self.cached

    @property
    def left_to_submit(self) -> int:
        """Items not submitted yet (a cancelled job never submits them)."""
        return self.to_submit - self.submitted

    @property
    def all_final(self) -> bool:
        """Every item has its final answer: all submitted, none pending (re-checks included,
        since a task waiting for its re-check is pending)."""
        return self.left_to_submit == 0 and self.pending == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "cached": self.cached,
            "to_submit": self.to_submit,
            "submitted": self.submitted,
            "pending": self.pending,
            "completed": self.completed,
            "failed": self.failed,
            "expired": self.expired,
            "by_verdict": dict(self.by_verdict),
        }

    def progress_json(self) -> dict[str, Any]:
        """What moved since creation (the rest is fixed at creation, on the job's row): what a
        finished job keeps once its counts can no longer change."""
        shown = self.as_json()
        return {name: shown[name] for name in _PROGRESS}

    def with_progress(self, progress: Mapping[str, Any]) -> JobCounts:
        """These counts (a job's planned ones) with the progress `progress_json` gave."""
        by_verdict = progress["by_verdict"]
        return replace(
            self,
            submitted=int(progress["submitted"]),
            pending=int(progress["pending"]),
            completed=int(progress["completed"]),
            failed=int(progress["failed"]),
            expired=int(progress["expired"]),
            by_verdict={verdict: int(by_verdict.get(verdict, 0)) for verdict in VERDICTS},
        )


_PROGRESS = ("submitted", "pending", "completed", "failed", "expired", "by_verdict")


def counts_fixed_once_finished(planned: JobCounts, *, rechecked: bool) -> bool:
    """Whether a finished job's counts (its `job.completed` event's) can no longer change: its
    submitted items' tasks are final and immutable, and so are its duplicates' rows, which show
    them. Not when its items are re-checked (a re-check answers a final task again), nor when a
    row is cached: it shows an earlier check's task, which a re-check of its own may still
    answer again."""
    return not rechecked and planned.cached == 0


def planned_counts(request: JobRequest, plan: DedupePlan, *, cached: int) -> JobCounts:
    """The counts of a job just created: what it holds and what it will submit. `cached`: how
    many first occurrences the store answered from this client's recent final answers."""
    first_occurrences = len(plan.items) - plan.duplicates
    if not 0 <= cached <= first_occurrences:
        raise ValueError(f"{cached} cached items among {first_occurrences} first occurrences")
    return JobCounts(
        items=request.item_count,
        rejected=len(request.rejections),
        duplicates=plan.duplicates,
        cached=cached,
    )


def counts_with_progress(
    planned: JobCounts,
    submitted_by_state: Mapping[TaskState, int],
    rows_by_verdict: Mapping[str | None, int],
) -> JobCounts:
    """The counts of a job under way: `submitted_by_state` counts the tasks of its submitted
    items by state; `rows_by_verdict` its result rows by verdict (None: no verdict yet, or an
    answer upstream gave no verdict to), duplicates and cached rows included."""
    submitted = sum(submitted_by_state.values())
    if submitted > planned.to_submit:
        raise ValueError(f"{submitted} items submitted of {planned.to_submit} to submit")
    return JobCounts(
        items=planned.items,
        rejected=planned.rejected,
        duplicates=planned.duplicates,
        cached=planned.cached,
        submitted=submitted,
        pending=submitted_by_state.get(TaskState.PENDING, 0),
        completed=submitted_by_state.get(TaskState.COMPLETED, 0),
        failed=submitted_by_state.get(TaskState.FAILED, 0),
        expired=submitted_by_state.get(TaskState.EXPIRED, 0),
        by_verdict={verdict: rows_by_verdict.get(verdict, 0) for verdict in VERDICTS},
    )
