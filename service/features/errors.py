"""What a feature refuses, as typed errors a surface translates: the REST API to a problem
document (`service.api.errors`), the portal to its refusal page, a job to its failure record.

Each carries the words a person can act on and the kind of problem (its stable code); the status
is the one the contract gives that refusal, for surfaces that speak HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from service.domain import problems
from service.domain.problems import ProblemKind


@dataclass(frozen=True, slots=True)
class BrokenRule:
    field: str | None
    message: str


class FeatureError(Exception):
    status: ClassVar[int] = 400
    kind: ClassVar[ProblemKind] = problems.kind_of_status(400)

    def __init__(self, detail: str, broken: Sequence[BrokenRule] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.broken = list(broken)


class NotFound(FeatureError):
    """The client has no such thing (or the id cannot name one): 404, as if it did not exist."""

    status = 404
    kind = problems.NOT_FOUND

    def __init__(self, resource: str, detail: str) -> None:
        super().__init__(detail)
        self.resource = resource


class NoDeliveryTo(NotFound):
    """An event has no delivery to the subscription named."""


class InvalidInput(FeatureError):
    status = 422
    kind = problems.VALIDATION_FAILED


class TaskAlreadyFinal(FeatureError):
    status = 409
    kind = problems.TASK_ALREADY_FINAL


class SubscriptionDisabled(FeatureError):
    status = 409
    kind = problems.SUBSCRIPTION_DISABLED


class BodyTooLarge(FeatureError):
    status = 413
    kind = problems.BODY_TOO_LARGE


class MoveNotPossible(FeatureError):
    """A check job's move its state does not allow: 409, with the reason."""

    status = 409
    kind = problems.CONFLICT
