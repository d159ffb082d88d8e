"""The simulator's answers (service/sim/answers.py) are read by the domain as what they stand
for: a demo or a test that asks the simulator for a fault gets the reaction the real one would."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.domain.answers import OutcomeKind, RawAnswer, classify_answer
from service.sim.answers import Answer, fault, finished, invalid_argument, pending
from service.sim.faults import FaultMode

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def read(answer: Answer) -> OutcomeKind:
    retry_after = dict(answer.headers).get(b"retry-after")
    raw = RawAnswer(
        answer.http_status,
        answer.body,
        retry_after=None if retry_after is None else retry_after.decode(),
    )
    return classify_answer(raw, NOW).kind


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (pending(), OutcomeKind.PENDING),
        (finished("0062********", "ring"), OutcomeKind.COMPLETED),
        (invalid_argument("argument 'task_id': not found"), OutcomeKind.REJECTED),
        (fault(FaultMode.RATE_LIMIT, retry_after_s=3), OutcomeKind.RATE_LIMITED),
        (fault(FaultMode.UNAUTHORIZED), OutcomeKind.ACCOUNT_PROBLEM),
        (fault(FaultMode.KEY_EXPIRED), OutcomeKind.ACCOUNT_PROBLEM),
        (fault(FaultMode.NO_PERMISSION), OutcomeKind.ACCOUNT_PROBLEM),
        (fault(FaultMode.OUT_OF_QUOTA), OutcomeKind.ACCOUNT_PROBLEM),
        (fault(FaultMode.NOT_FOUND), OutcomeKind.ACCOUNT_PROBLEM),
        (fault(FaultMode.INTERNAL_ERROR), OutcomeKind.TRANSIENT),
        (fault(FaultMode.GARBAGE), OutcomeKind.TRANSIENT),
        (fault(FaultMode.HTML), OutcomeKind.TRANSIENT),
        (fault(FaultMode.EMPTY), OutcomeKind.TRANSIENT),
        (fault(FaultMode.UNKNOWN_STATUS), OutcomeKind.TRANSIENT),
        (fault(FaultMode.PENDING_200), OutcomeKind.PENDING),
    ],
    ids=lambda value: value.label if isinstance(value, Answer) else str(value),
)
def test_each_simulated_answer_is_classified_as_the_real_one_would_be(
    answer: Answer, kind: OutcomeKind
) -> None:
    assert read(answer) is kind


def test_slow_is_not_an_answer_of_its_own() -> None:
    with pytest.raises(ValueError, match="slow"):
        fault(FaultMode.SLOW)
