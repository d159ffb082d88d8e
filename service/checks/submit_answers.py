"""What a check submission answers: the task it made, or a problem document built by
`service.domain.problems` and kept, as sent, for replays of the same Idempotency-Key."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import orjson

from service.domain.budgets import budget_exhausted_detail, seconds_to_next_utc_midnight
from service.domain.checks import SUBMIT_OUTCOME_UNKNOWN, SubmitKind, SubmitOutcome
from service.domain.problems import CHECK_BUDGET_EXHAUSTED, problem_document, upstream_kind


@dataclass(frozen=True)
class SubmitAnswer:
    """What the client is answered: the task (201) or a problem document, as the JSON text that
    is sent and kept for replays (numbers in metadata can exceed 64 bits: the text, not a
    re-encoding, is what goes out)."""

    status: int
    body_json: str
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False
    # This request made a new pending task (it takes room under the client's pending limit).
    created_pending: bool = False

    @classmethod
    def problem(
        cls,
        status: int,
        detail: str,
        code: str,
        headers: dict[str, str] | None = None,
        *,
        title: str | None = None,
    ) -> SubmitAnswer:
        document = problem_document(status, detail, upstream_kind(code), title=title)
        return cls(status, orjson.dumps(document).decode(), headers or {})

    @property
    def is_problem(self) -> bool:
        return self.status >= 400

    @property
    def code(self) -> str | None:
        """The problem's code, for logs and metrics (None for a task)."""
        if not self.is_problem:
            return None
        value = orjson.loads(self.body_json).get("code")
        return value if isinstance(value, str) else None


class DifferentBody(Exception):
    """The Idempotency-Key was used before with another body."""


def unknown_outcome_answer() -> SubmitAnswer:
    return SubmitAnswer.problem(
        502,
        "the request may have reached upstream but its answer was not recorded: the check "
        "may or may not exist upstream; phonebridge will not submit it again with this "
        "Idempotency-Key",
        SUBMIT_OUTCOME_UNKNOWN,
    )


def unavailable_answer(detail: str) -> SubmitAnswer:
    return SubmitAnswer.problem(502, detail, "UPSTREAM_UNAVAILABLE")


def over_budget_answer(limit: int, now: datetime) -> SubmitAnswer:
    """429 CHECK_BUDGET_EXHAUSTED: the client's daily check budget is spent until midnight UTC."""
    retry_after_s = seconds_to_next_utc_midnight(now)
    return SubmitAnswer.problem(
        429,
        budget_exhausted_detail(limit, retry_after_s),
        CHECK_BUDGET_EXHAUSTED.code,
        {"Retry-After": str(retry_after_s)},
    )


def answer_without_task(outcome: SubmitOutcome, pause_probe_s: float) -> SubmitAnswer:
    """What a submit that made no task answers: upstream's refusal of the check or of the
    account, its rate limit, no answer, or an answer that may hide a check upstream holds."""
    if outcome.kind is SubmitKind.REJECTED:
        return SubmitAnswer.problem(
            422,
            f"upstream refused the check: {outcome.message}",
            outcome.code,
            title="Unprocessable Content",
        )
    if outcome.kind is SubmitKind.ACCOUNT_PROBLEM:
        return SubmitAnswer.problem(
            503,
            f"upstream refuses this account ({outcome.code}: {outcome.message}); "
            "calls are paused until a probe succeeds; nothing was submitted",
            outcome.code,
            {"Retry-After": str(round(pause_probe_s))},
        )
    if outcome.kind is SubmitKind.RATE_LIMITED:
        retry_after = max(1, round(outcome.retry_after_s or 1))
        return SubmitAnswer.problem(
            503,
            "upstream refused the call (RATE_LIMIT_EXCEEDED); nothing was submitted",
            outcome.code,
            {"Retry-After": str(retry_after)},
        )
    if outcome.kind is SubmitKind.UNAVAILABLE:
        return unavailable_answer(f"{outcome.message}; nothing was submitted")
    return SubmitAnswer.problem(
        502,
        f"{outcome.message}; phonebridge will not submit it again with this Idempotency-Key",
        SUBMIT_OUTCOME_UNKNOWN,
    )


def no_credentials_answer() -> SubmitAnswer:
    return SubmitAnswer.problem(
        503,
        "this phonebridge has no upstream credentials "
        "(PHONEBRIDGE_UPSTREAM_API_ID and PHONEBRIDGE_UPSTREAM_API_SECRET), so it "
        "cannot submit checks",
        "NO_UPSTREAM_CREDENTIALS",
    )


def paused_answer(reason: str, pause_probe_s: float) -> SubmitAnswer:
    """Calls are paused (upstream refused the account): nothing is sent until a probe passes."""
    return SubmitAnswer.problem(
        503,
        f"upstream refuses this account ({reason}); calls are paused "
        "until a probe succeeds; nothing was submitted",
        reason,
        {"Retry-After": str(round(pause_probe_s))},
    )


def rate_ceiling_answer(first_slot_in_s: float) -> SubmitAnswer:
    """No slot of the shared rate ceiling soon enough: nothing is sent."""
    return SubmitAnswer.problem(
        503,
        "the upstream call rate is at its ceiling; nothing was submitted, try again",
        "RATE_CEILING",
        {"Retry-After": str(max(1, round(first_slot_in_s)))},
    )
