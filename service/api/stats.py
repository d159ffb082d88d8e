"""GET /v1/stats/completion-times: when this client's answers arrive, as polling has learnt it.

The figures are the client's share of the completion-time estimate (service/domain/completion.py):
the decayed count of its completions and the ages (seconds after `submitted_at`) by which given
shares of its answers had arrived. The schedule itself uses the whole account's estimate.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from service.api.deps import ClientDep, SessionDep, SettingsDep
from service.api.errors import problem_responses
from service.api.responses import json_response
from service.clock import utc_now
from service.domain.schedule import PollSchedule
from service.features.stats import completion_times

router = APIRouter(prefix="/v1/stats", tags=["stats"], responses=problem_responses(422, 503))

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


class CompletionQuantile(BaseModel):
    quantile: float = Field(description="A share of answers, e.g. 0.95")
    seconds: float = Field(description="The age (after submitted_at) by which that share arrived")


class CompletionTimes(BaseModel):
    schedule: PollSchedule = Field(description="The poll schedule in use (POLL_SCHEDULE)")
    completions: float = Field(
        description="This client's completions the figures rest on, older ones counting less "
        "(each half-life halves their weight)"
    )
    half_life_s: float
    min_completions: float = Field(
        description="Below this many completions (of the account), polls follow plain backoff"
    )
    updated_at: datetime | None = Field(description="The latest completion learnt")
    quantiles: list[CompletionQuantile] = Field(
        description="When this client's answers arrived; empty until one has"
    )


@router.get(
    "/completion-times",
    response_model=CompletionTimes,
    summary="When this client's upstream answers arrive, as learnt by polling",
)
async def get_completion_times(
    client: ClientDep, session: SessionDep, settings: SettingsDep
) -> Response:
    half_life_s = settings.poll_estimate_half_life_s
    estimate, updated_at = await completion_times(session, client.id, utc_now(), half_life_s)
    known = estimate.total > 0
    body = CompletionTimes(
        schedule=settings.poll_schedule,
        completions=round(estimate.total, 3),
        half_life_s=half_life_s,
        min_completions=settings.poll_estimate_min_completions,
        updated_at=updated_at,
        quantiles=[
            CompletionQuantile(quantile=q, seconds=round(estimate.quantile(q), 3))
            for q in (QUANTILES if known else ())
        ],
    )
    return json_response(body.model_dump(mode="json"))
