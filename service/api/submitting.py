"""Submitting a check for an authenticated client: the room under its pending limit around
service.checks.submit.SubmitService, shared by `POST /v1/checks` and the portal's check form, so
both count and submit alike."""

from __future__ import annotations

from fastapi import Request

from service.api.auth import AuthenticatedClient, pending_room
from service.api.errors import invalid_input
from service.api.resources import ApiResources
from service.checks.submit_answers import DifferentBody, SubmitAnswer
from service.domain.checks import CheckRequest
from service.domain.problems import CHECK_BUDGET_EXHAUSTED
from service.observability.metrics import record_over_budget


async def submit_for_client(
    resources: ApiResources,
    request: Request,
    client: AuthenticatedClient,
    check: CheckRequest,
    idempotency_key: str | None,
) -> SubmitAnswer:
    """Submit a validated check for `client`: what `POST /v1/checks` and the portal's form both
    call. Raises ApiProblem 429 when the client's pending limit has no room, 422 when the
    Idempotency-Key was used with another body; past the client's daily check budget the answer
    is the 429 CHECK_BUDGET_EXHAUSTED itself."""
    # A check that stays pending upstream is a pending task like a registered one: it counts
    # against the client's pending limit, and the room is taken before upstream is called.
    async with pending_room(resources, request, client, 1) as room:
        try:
            answer = await resources.checks.submit(
                client.id,
                check,
                idempotency_key,
                checks_per_day=client.limits.max_checks_per_day,
            )
        except DifferentBody:
            raise invalid_input(
                "this Idempotency-Key was used with a different request body; use a new key for "
                "a new check"
            ) from None
        room.created = int(answer.created_pending)
    if answer.status == 429 and answer.code == CHECK_BUDGET_EXHAUSTED.code:
        record_over_budget(client.id, "check")
    return answer
