"""What a check submission answers: the task it made, or a problem document built by
`service.domain.problems` and kept, as sent, for replays of the same Idempotency-Key."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from service.domain.checks import SUBMIT_OUTCOME_UNKNOWN
from service.domain.problems import problem_document, upstream_kind


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
