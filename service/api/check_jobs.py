"""The /v1/check-jobs routes: create a job from JSON or CSV, read and list jobs, start, pause,
resume and cancel one, its rejections and its results (JSON pages, streamed CSV or NDJSON).

Thin: every rule is service.features.check_jobs's. The body is read here within the jobs' own
limit (16 MiB, enforced by BodySizeLimit while it streams, so an oversized one is never held
whole), and handed to the feature as bytes with its media type."""

from __future__ import annotations

import email.message
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from service.api.check_job_models import (
    CREATE_OPENAPI,
    CSV_MEDIA_TYPE,
    NDJSON_MEDIA_TYPE,
    RejectionOut,
    ResultOut,
)
from service.api.checks import IDEMPOTENCY_HEADER
from service.api.deps import ClientDep, ResourcesDep, SessionDep
from service.api.errors import ApiProblem, FieldProblem, invalid_input, problem_responses
from service.api.pagination import (
    CursorQuery,
    LimitQuery,
    Page,
    decode_row_cursor,
    encode_row_cursor,
)
from service.api.paths import JobIdPath
from service.api.resources import ApiResources
from service.api.responses import json_response
from service.domain import problems
from service.domain.checks import IDEMPOTENCY_KEY_MAX_LENGTH, valid_idempotency_key
from service.domain.job_input import JOB_BODY_MAX_BYTES
from service.domain.job_lifecycle import JobMove
from service.domain.schemas import JobOut
from service.domain.states import JobState
from service.features import check_jobs as job_feature
from service.features.check_job_creation import JobMedia, create_job
from service.features.check_jobs import JobPace, ResultForm
from service.features.job_counts import KeptCounts
from service.features.paging import PAGE_SIZE_DEFAULT

PATH = "/v1/check-jobs"
# The body limit of job creation (BodySizeLimit's `limits_by_path`).
BODY_LIMITS = {PATH: JOB_BODY_MAX_BYTES}
router = APIRouter(prefix=PATH, tags=["check jobs"], responses=problem_responses(422, 503))


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    summary="Create a check job from a list of numbers (JSON or CSV)",
    responses={201: {"description": "The job (or, for a replayed key, that job as it is now)"}},
    openapi_extra=CREATE_OPENAPI,
)
async def create_check_job(
    request: Request, client: ClientDep, resources: ResourcesDep, session: SessionDep
) -> Response:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not valid_idempotency_key(key):
        raise invalid_input(
            f"the Idempotency-Key header must be 1-{IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII "
            "characters",
            [FieldProblem(field="header.Idempotency-Key", message="not 1-255 printable ASCII")],
        )
    media = _media_of(request)
    body = await request.body()
    query = list(request.query_params.multi_items())
    if media is JobMedia.JSON and query:
        raise invalid_input(
            "a JSON job takes its options in the body, not as query parameters",
            [FieldProblem(field=f"query.{name}", message="not taken") for name, _ in query],
        )
    created = await create_job(
        session,
        client.id,
        media=media,
        body=body,
        query=query,
        idempotency_key=key,
        settings=resources.settings,
        secrets=resources.job_secrets,
        pace=JobPace.of(resources.settings),
        now=resources.clock(),
    )
    return json_response(job_feature.job_json(created.view), status_code=201)


@router.get("", response_model=Page[JobOut], summary="List check jobs, newest first")
async def list_check_jobs(
    client: ClientDep,
    resources: ResourcesDep,
    session: SessionDep,
    state: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
    limit: LimitQuery = PAGE_SIZE_DEFAULT,
    cursor: CursorQuery = None,
) -> Response:
    before_id = decode_row_cursor(cursor) if cursor is not None else None
    page = await job_feature.list_jobs(
        session,
        client.id,
        state=state,
        before_id=before_id,
        size=limit,
        pace=JobPace.of(resources.settings),
        now=resources.clock(),
        kept=KeptCounts(resources.redis),
    )
    last = page.last
    return json_response(
        {
            "data": [job_feature.job_json(view) for view in page.items],
            "next_cursor": None if last is None else encode_row_cursor(last.job.id),
        }
    )


@router.get(
    "/{job_id}", response_model=JobOut, summary="Read a check job", responses=problem_responses(404)
)
async def get_check_job(
    job_id: JobIdPath, client: ClientDep, resources: ResourcesDep, session: SessionDep
) -> Response:
    view = await job_feature.find_job(
        session,
        client.id,
        job_id,
        JobPace.of(resources.settings),
        resources.clock(),
        kept=KeptCounts(resources.redis),
    )
    return json_response(job_feature.job_json(view))


async def _move(
    move: JobMove, job_id: str, client: ClientDep, resources: ApiResources, session: SessionDep
) -> Response:
    view = await job_feature.move_job_by_client(
        session, client.id, job_id, move, JobPace.of(resources.settings), resources.clock()
    )
    return json_response(job_feature.job_json(view))


_MOVE_RESPONSES = problem_responses(404, 409)


@router.post(
    "/{job_id}/start",
    response_model=JobOut,
    summary="Start a draft job",
    responses=_MOVE_RESPONSES,
)
async def start_check_job(
    job_id: JobIdPath, client: ClientDep, resources: ResourcesDep, session: SessionDep
) -> Response:
    return await _move(JobMove.START, job_id, client, resources, session)


@router.post(
    "/{job_id}/pause",
    response_model=JobOut,
    summary="Pause a job: nothing more is submitted until it is resumed",
    responses=_MOVE_RESPONSES,
)
async def pause_check_job(
    job_id: JobIdPath, client: ClientDep, resources: ResourcesDep, session: SessionDep
) -> Response:
    return await _move(JobMove.PAUSE, job_id, client, resources, session)


@router.post(
    "/{job_id}/resume",
    response_model=JobOut,
    summary="Resume a job its client paused",
    responses=_MOVE_RESPONSES,
)
async def resume_check_job(
    job_id: JobIdPath, client: ClientDep, resources: ResourcesDep, session: SessionDep
) -> Response:
    return await _move(JobMove.RESUME, job_id, client, resources, session)


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job: nothing not yet submitted is ever submitted",
    responses=_MOVE_RESPONSES,
)
async def cancel_check_job(
    job_id: JobIdPath, client: ClientDep, resources: ResourcesDep, session: SessionDep
) -> Response:
    return await _move(JobMove.CANCEL, job_id, client, resources, session)


@router.get(
    "/{job_id}/rejections",
    response_model=Page[RejectionOut],
    summary="A job's rejected items, by line",
    responses=problem_responses(404),
)
async def list_check_job_rejections(
    job_id: JobIdPath,
    client: ClientDep,
    session: SessionDep,
    limit: LimitQuery = PAGE_SIZE_DEFAULT,
    cursor: CursorQuery = None,
) -> Response:
    after_line = decode_row_cursor(cursor) if cursor is not None else 0
    page = await job_feature.rejections(
        session, client.id, job_id, after_line=after_line, size=limit
    )
    last = page.last
    return json_response(
        {
            "data": [row.as_json() for row in page.items],
            "next_cursor": None if last is None else encode_row_cursor(last.line),
        }
    )


@router.get(
    "/{job_id}/results",
    response_model=Page[ResultOut],
    summary="A job's results, one row per accepted item in input order",
    description="`Accept: text/csv` streams CSV (a cell a spreadsheet would run as a formula "
    "gets a leading `'`), `Accept: application/x-ndjson` streams one JSON object a line; "
    "otherwise JSON pages with `limit` and `cursor`.",
    responses={
        200: {
            "content": {
                CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
                NDJSON_MEDIA_TYPE: {"schema": {"type": "string"}},
            }
        },
        **problem_responses(404),
    },
)
async def list_check_job_results(
    request: Request,
    job_id: JobIdPath,
    client: ClientDep,
    resources: ResourcesDep,
    session: SessionDep,
    limit: LimitQuery = PAGE_SIZE_DEFAULT,
    cursor: CursorQuery = None,
) -> Response:
    form = _streamed_form(request.headers.get("accept", ""))
    if form is not None:
        job = await job_feature.results_job(session, client.id, job_id)
        media_type = CSV_MEDIA_TYPE if form is ResultForm.CSV else NDJSON_MEDIA_TYPE
        return StreamingResponse(
            job_feature.stream_results(resources.sessions, job, form),
            media_type=f"{media_type}; charset=utf-8" if form is ResultForm.CSV else media_type,
        )
    after_line = decode_row_cursor(cursor) if cursor is not None else 0
    page = await job_feature.results(session, client.id, job_id, after_line=after_line, size=limit)
    last = page.last
    return json_response(
        {
            "data": [row.as_json() for row in page.items],
            "next_cursor": None if last is None else encode_row_cursor(last.line),
        }
    )


def _media_of(request: Request) -> JobMedia:
    declared = request.headers.get("content-type")
    if declared is not None:
        message = email.message.Message()
        message["content-type"] = declared
        maintype, subtype = message.get_content_maintype(), message.get_content_subtype()
        if maintype == "application" and (subtype == "json" or subtype.endswith("+json")):
            return JobMedia.JSON
        if maintype == "text" and subtype == "csv":
            return JobMedia.CSV
    raise ApiProblem(
        415,
        "a check job is sent as `Content-Type: application/json` or `text/csv`",
        kind=problems.UNSUPPORTED_MEDIA_TYPE,
    )


def _streamed_form(accept: str) -> ResultForm | None:
    """CSV or NDJSON when the Accept header names one (the first named wins), else None: JSON
    pages."""
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media == CSV_MEDIA_TYPE:
            return ResultForm.CSV
        if media == NDJSON_MEDIA_TYPE:
            return ResultForm.NDJSON
        if media in ("application/json", "*/*"):
            return None
    return None
