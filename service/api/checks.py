"""The /v1/checks route (submit a check upstream on the client's behalf) and /v1/callback-url
(the per-client URL a client that submits at AccuAuth itself passes as `callback`).

Thin: the body and the Idempotency-Key are checked here, the submission is
service.checks.submit.SubmitService's, called through service/api/submitting.py, as the portal's
check form does too, so both paths count and submit alike."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from service.api.bodies import read_json_body
from service.api.deps import ClientDep, ResourcesDep, resources_and_client
from service.api.errors import (
    PROBLEM_MEDIA_TYPE,
    ApiProblem,
    FieldProblem,
    invalid_input,
    problem_responses,
)
from service.api.responses import json_response
from service.api.submitting import submit_for_client
from service.domain import problems
from service.domain.check_options import MAX_AGE_MAX_S
from service.domain.checks import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    valid_idempotency_key,
    validate_check,
)
from service.domain.intake import METADATA_MAX_BYTES, Rejection
from service.domain.phone_numbers import EXAMPLE, PHONE_NUMBER_MAX_CHARS
from service.domain.rechecks import (
    AFTER_S_MAX,
    AFTER_S_MIN,
    DEFAULT_AFTER_S,
    DEFAULT_MAX,
    MAX_MAX,
    MAX_MIN,
)
from service.domain.schemas import TaskOut
from service.domain.verdicts import Verdict

router = APIRouter(tags=["checks"], responses=problem_responses(422, 503))

IDEMPOTENCY_HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"


class RecheckIn(BaseModel):
    """Submit the number again some time after an answer that means "try again later"."""

    model_config = ConfigDict(extra="forbid")

    verdicts: list[Verdict] = Field(
        default=[Verdict.RETRY],
        min_length=1,
        description="An answer with one of these verdicts is checked again.",
    )
    after_s: int = Field(
        default=DEFAULT_AFTER_S,
        ge=AFTER_S_MIN,
        le=AFTER_S_MAX,
        description="Seconds after that answer. The lower bound is the deployment's "
        "PHONEBRIDGE_RECHECK_MIN_AFTER_S (60 by default).",
    )
    max: int = Field(
        default=DEFAULT_MAX,
        ge=MAX_MIN,
        le=MAX_MAX,
        description="At most this many re-checks; each is one more upstream submit.",
    )


class CheckSubmission(BaseModel):
    """A check to submit upstream. Unknown fields are refused (422)."""

    # Published in the OpenAPI schema only: submit_check reads the body with
    # service.domain.checks, so the rules here are that module's.
    model_config = ConfigDict(extra="forbid")

    phone_number: str = Field(
        max_length=PHONE_NUMBER_MAX_CHARS,
        # The form alone; which numbers are possible is libphonenumber's to say (a 422 naming
        # the rule broken).
        pattern=r"^\s*\+?[0-9](?:[ .()-]*[0-9])*\s*$",
        description="A phone number with its country code, of a country this phonebridge checks "
        "(PHONEBRIDGE_CHECK_COUNTRIES, by default MX and CO): E.164 with or without '+', "
        "Mexico's old mobile prefix (+52 1 and 10 digits) accepted, spaces, dots, dashes and "
        "parentheses between digits. It must be a possible number of its country "
        "(libphonenumber); anything else answers 422 naming the rule broken.",
        examples=[EXAMPLE],
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Any JSON object of at most {METADATA_MAX_BYTES} bytes as compact JSON; "
        "echoed back and in webhooks.",
    )
    recheck: RecheckIn | None = Field(
        default=None,
        description="Re-checks: the task stays pending until its last answer; `rechecks` lists "
        "the earlier answers and its one event comes after the last.",
    )
    max_age_s: int | None = Field(
        default=0,
        ge=0,
        le=MAX_AGE_MAX_S,
        description="When this client checked the same number before and that check got its "
        "final answer less than this many seconds ago, the answer is 200 and that earlier task, "
        "with no upstream call. 0 (the default): always submit.",
    )


class CallbackUrl(BaseModel):
    url: str = Field(description="Pass it as `callback` when you submit checks at AccuAuth.")


@router.post(
    "/v1/checks",
    status_code=201,
    response_model=TaskOut,
    summary="Submit a phone check upstream",
    responses={
        200: {
            "model": TaskOut,
            "description": "Answered from this client's earlier check of the number "
            "(`max_age_s`): that task, with no upstream call",
        },
        201: {"description": "Submitted: the task, pending or already completed"},
        **problem_responses(502),
    },
    openapi_extra={
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": f"1-{IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters. "
                "The same key with the same body within 24 h answers the first answer again, "
                "byte for byte and with `Idempotent-Replayed: true`, and never submits twice; "
                "with another body, 422.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
                    "pattern": "^[\\x20-\\x7e]+$",
                },
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/CheckSubmission"},
                    "example": {
                        "phone_number": EXAMPLE,
                        "metadata": {"order": 42},
                        "recheck": {"verdicts": ["retry"], "after_s": 600, "max": 1},
                    },
                }
            },
        },
    },
)
async def submit_check(request: Request) -> Response:
    resources, client = await resources_and_client(request)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not valid_idempotency_key(key):
        raise invalid_input(
            f"the Idempotency-Key header must be 1-{IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII "
            "characters",
            [FieldProblem(field="header.Idempotency-Key", message="not 1-255 printable ASCII")],
        )
    checked = validate_check(
        await read_json_body(request),
        resources.settings.check_countries,
        recheck_min_after_s=resources.settings.recheck_min_after_s,
    )
    if isinstance(checked, Rejection):
        raise invalid_input(
            checked.detail,
            [FieldProblem(field=e.field, message=e.message) for e in checked.errors],
        )
    answer = await submit_for_client(resources, request, client, checked, key)
    headers = dict(answer.headers)
    if answer.replayed:
        # As Stripe says it: the bytes are the first answer's, and nothing was submitted now.
        headers[REPLAYED_HEADER] = "true"
    return Response(
        answer.body_json,
        status_code=answer.status,
        headers=headers or None,
        media_type=PROBLEM_MEDIA_TYPE if answer.is_problem else "application/json",
    )


@router.get(
    "/v1/callback-url",
    response_model=CallbackUrl,
    summary="This client's upstream callback URL",
    responses=problem_responses(409),
)
async def callback_url(client: ClientDep, resources: ResourcesDep) -> Response:
    url = await resources.callbacks.url_for(client.id)
    if url is None:
        raise ApiProblem(
            409,
            "this phonebridge has no public URL (PHONEBRIDGE_PUBLIC_URL), so upstream cannot "
            "reach a callback; ask its operator to set it",
            kind=problems.NO_PUBLIC_URL,
        )
    return json_response({"url": url})
