"""Re-checks: a check's number submitted again some time after an answer that means "try again
later", as the client's `recheck` asks (`{"verdicts": ["retry"], "after_s": 600, "max": 1}`).

Pure: the `recheck` object's rules (`check_recheck`, shared by `POST /v1/checks` and, later,
check jobs) and when an answer calls for a re-check (`recheck_due_at`, which the poll decision,
the submit and the re-submit all use); what the answer to a re-submit means for the task is
service/domain/resubmits.py.

A task with re-checks keeps its `task_id` (the first upstream one). Its `result` is the answer of
its current upstream check (null until that one answers) and `rechecks` the answers of the
earlier ones; it stays pending while a re-check may still come. A re-check is one more upstream
submit, made durably by the engine (service/engine/scheduled_submits.py): a submit whose outcome
is unknown is never made again, and the task then ends with the answer it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.domain.intake import FieldError
from service.domain.verdicts import Verdict

RECHECK_FIELDS = ("verdicts", "after_s", "max")
_VERDICT_NAMES = frozenset(verdict.value for verdict in Verdict)
# The contract's example is what an empty `recheck` object means.
DEFAULT_VERDICTS = frozenset({Verdict.RETRY})
DEFAULT_AFTER_S = 600
DEFAULT_MAX = 1
# Bounds of `after_s`: sooner than a minute, upstream's "try again later" has rarely changed (a
# deployment may lower it for tests and demos: PHONEBRIDGE_RECHECK_MIN_AFTER_S); later than a day,
# the answer is no longer the same check's. Of `max`: each re-check is one more upstream submit.
AFTER_S_MIN = 60
AFTER_S_MAX = 86_400
MAX_MIN = 1
MAX_MAX = 5

# The `last_error` codes of a task that ends with the answer it has because a re-check could not
# be made: its submit's outcome is unknown, or it could not be submitted before the deadline.
RECHECK_OUTCOME_UNKNOWN = "SUBMIT_OUTCOME_UNKNOWN"
RECHECK_NOT_SUBMITTED = "RECHECK_NOT_SUBMITTED"


@dataclass(frozen=True, slots=True)
class RecheckPolicy:
    """A valid `recheck`: after a final answer whose verdict is among `verdicts`, the number is
    submitted again `after_s` seconds later, at most `max_rechecks` times per check."""

    verdicts: frozenset[Verdict] = DEFAULT_VERDICTS
    after_s: int = DEFAULT_AFTER_S
    max_rechecks: int = DEFAULT_MAX

    def as_json(self) -> dict[str, Any]:
        """The policy as the contract writes it (verdicts in the contract's order), as stored."""
        return {
            "verdicts": [verdict.value for verdict in Verdict if verdict in self.verdicts],
            "after_s": self.after_s,
            "max": self.max_rechecks,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RecheckPolicy:
        """A policy as `as_json` stored it (checked when it was accepted)."""
        return cls(
            frozenset(Verdict(name) for name in value["verdicts"]),
            int(value["after_s"]),
            int(value["max"]),
        )


def check_recheck(
    value: object,
    errors: list[FieldError],
    *,
    field: str = "recheck",
    min_after_s: int = AFTER_S_MIN,
) -> RecheckPolicy | None:
    """The policy a `recheck` value asks for: None when it is absent (null), or None with every
    broken rule added to `errors`. Missing keys take the contract's example values (`retry`,
    600 s, once); `min_after_s` is the deployment's lower bound of `after_s`."""
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(
            FieldError(field, 'must be an object like {"verdicts": ["retry"], "after_s": 600}')
        )
        return None
    before = len(errors)
    allowed = ", ".join(RECHECK_FIELDS)
    errors.extend(
        FieldError(f"{field}.{str(name)[:64]}", f"unknown field (allowed: {allowed})")
        for name in value
        if name not in RECHECK_FIELDS
    )
    verdicts = _verdicts(value.get("verdicts", [Verdict.RETRY.value]), errors, field)
    after_s = _whole_number(
        value.get("after_s", DEFAULT_AFTER_S), min_after_s, AFTER_S_MAX, f"{field}.after_s", errors
    )
    max_rechecks = _whole_number(
        value.get("max", DEFAULT_MAX), MAX_MIN, MAX_MAX, f"{field}.max", errors
    )
    if len(errors) > before or verdicts is None or after_s is None or max_rechecks is None:
        return None
    return RecheckPolicy(verdicts, after_s, max_rechecks)


def _verdicts(value: object, errors: list[FieldError], field: str) -> frozenset[Verdict] | None:
    names = ", ".join(verdict.value for verdict in Verdict)
    rule = f"must be a non-empty list of verdicts ({names})"
    if not isinstance(value, list) or not value:
        errors.append(FieldError(f"{field}.verdicts", rule))
        return None
    unknown = [item for item in value if not isinstance(item, str) or item not in _VERDICT_NAMES]
    if unknown:
        shown = ", ".join(repr(item)[:32] for item in unknown[:3])
        errors.append(FieldError(f"{field}.verdicts", f"{rule}; not a verdict: {shown}"))
        return None
    return frozenset(Verdict(item) for item in value)


def _whole_number(
    value: object, low: int, high: int, field: str, errors: list[FieldError]
) -> int | None:
    # JSON has one number type: 600.0 is 600, but true is not 1.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append(FieldError(field, f"must be a whole number from {low} to {high}"))
        return None
    return value


def recheck_due_at(
    policy: RecheckPolicy | None,
    verdict: Verdict | None,
    rechecks_done: int,
    answered_at: datetime,
) -> datetime | None:
    """When the number is to be submitted again after an answer with this verdict, given the
    re-checks already made for the check: `after_s` after the answer while its verdict is one the
    policy names and fewer than `max` re-checks were made; None when the answer is the last."""
    if policy is None or verdict is None or verdict not in policy.verdicts:
        return None
    if rechecks_done >= policy.max_rechecks:
        return None
    return answered_at + timedelta(seconds=policy.after_s)


def waiting_deadline(recheck_at: datetime, ttl_s: float) -> datetime:
    """The deadline of a task waiting for its re-check: the re-check has as long to be submitted
    as a check has to be answered (PHONEBRIDGE_TASK_TTL_S); a task still waiting then ends with
    the answer it has. The re-check's own upstream task then gets a deadline of its own."""
    return recheck_at + timedelta(seconds=ttl_s)
