"""The portal's check job pages: the list (by state, newest first) with the CSV upload, one job
(its estimate while a draft, its progress, the client's moves, its first rejections) and its
results CSV. Every rule is service.features.check_jobs's, the functions /v1/check-jobs calls:
the upload's fields go to `create_job` as the CSV's query parameters, so a refusal names the same
line or field as the API's."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from service.api.body_limit import RequestBodyTooLarge
from service.api.check_job_models import CSV_MEDIA_TYPE
from service.api.deps import SessionDep
from service.api.portal.rendering import render
from service.api.portal.session import (
    PORTAL_PATH,
    PortalRefusal,
    PortalRoute,
    PortalSession,
    PortalSessionDep,
    read_form,
    read_upload,
    see_other,
)
from service.api.resources import resources_of
from service.domain.check_options import MAX_AGE_MAX_S
from service.domain.checks import valid_idempotency_key
from service.domain.job_input import JOB_BODY_MAX_BYTES, JOB_ITEMS_MAX, NAME_MAX_LENGTH
from service.domain.job_lifecycle import JobMove, MoveRefused, move_job
from service.domain.states import JobState, PausedReason
from service.features import check_jobs as job_feature
from service.features.check_job_creation import JobMedia, create_job
from service.features.check_jobs import JobPace, JobView, ResultForm
from service.features.errors import BodyTooLarge, FeatureError, InvalidInput, MoveNotPossible
from service.features.job_counts import KeptCounts
from service.features.paging import PAGE_SIZE_DEFAULT

UPLOAD_PATH = f"{PORTAL_PATH}/jobs"
# The upload's whole body may pass the CSV's own 16 MiB (which create_job checks, as for the
# API) by its form: the other fields and the multipart headers.
FORM_ALLOWANCE_BYTES = 64 * 1024
BODY_LIMITS = {UPLOAD_PATH: JOB_BODY_MAX_BYTES + FORM_ALLOWANCE_BYTES}
# The upload's fields: the CSRF token, the idempotency key, name, max_age_s, start (and the file).
UPLOAD_FIELDS = 5
# How often a job page that moves by itself reloads itself (a <meta> refresh: no script).
REFRESH_S = 3
TOO_LARGE = (
    f"The file is larger than a job may take: at most {JOB_BODY_MAX_BYTES} bytes (16 MiB) and "
    f"{JOB_ITEMS_MAX} rows. Split it into several jobs."
)

router = APIRouter(route_class=PortalRoute)


def client_moves(view: JobView) -> list[JobMove]:
    """The moves the job's state allows now (job_lifecycle's rule): its page's buttons."""
    status = view.job.status
    return [
        move
        for move in JobMove
        if move.by_client and not isinstance(move_job(status, move), MoveRefused)
    ]


def moves_by_itself(view: JobView) -> bool:
    """Whether the job's page changes without the person doing anything, so that it reloads
    itself: queued or running, paused by phonebridge (it resumes by itself), or cancelled with
    submitted items still to answer."""
    job = view.job
    if job.state in (JobState.QUEUED, JobState.RUNNING):
        return True
    if job.state is JobState.PAUSED:
        return job.paused_reason is not PausedReason.CLIENT
    return job.state is JobState.CANCELLED and view.counts.pending > 0


def refusal_lines(error: FeatureError) -> list[str]:
    """What a person reads of a refused upload: each broken rule, named by the form's field (the
    feature names the CSV's options `query.name`) or by the CSV's line."""
    if isinstance(error, BodyTooLarge):
        return [TOO_LARGE]
    if not error.broken:
        return [error.detail]
    return [
        f"{rule.field.removeprefix('query.')}: {rule.message}" if rule.field else rule.message
        for rule in error.broken
    ]


# --- the list and the upload --------------------------------------------------------------------


async def _jobs_page(
    request: Request,
    session: PortalSession,
    db: SessionDep,
    *,
    state: JobState | None = None,
    before: int | None = None,
    error: FeatureError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    resources = resources_of(request)
    page = await job_feature.list_jobs(
        db,
        session.client.id,
        state=state,
        before_id=before,
        size=PAGE_SIZE_DEFAULT,
        pace=JobPace.of(resources.settings),
        now=resources.clock(),
        kept=KeptCounts(resources.redis),
    )
    last = page.last
    return render(
        request,
        "jobs.html",
        {
            "jobs": page.items,
            "state": state,
            "states": list(JobState),
            "next_before": None if last is None else last.job.id,
            # A fresh key per form shown: posting the same form twice (back, then upload again)
            # answers the job it made instead of making a second one.
            "idempotency_key": f"portal-{secrets.token_hex(16)}",
            "form": form or {"name": "", "max_age_s": "0", "start": "false"},
            "refusal": None if error is None else refusal_lines(error),
            "max_age_max_s": MAX_AGE_MAX_S,
            "name_max_length": NAME_MAX_LENGTH,
            "items_max": JOB_ITEMS_MAX,
        },
        session=session,
        status_code=200 if error is None else error.status,
    )


@router.get("/jobs")
async def jobs(
    request: Request,
    session: PortalSessionDep,
    db: SessionDep,
    state: Annotated[JobState | None, Query()] = None,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    return await _jobs_page(request, session, db, state=state, before=before)


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


@router.post("/jobs")
async def upload_job(request: Request, session: PortalSessionDep, db: SessionDep) -> Response:
    resources = resources_of(request)
    try:
        async with read_upload(request, session, max_fields=UPLOAD_FIELDS) as form:
            fields = {name: _text(form.get(name)) for name in ("name", "max_age_s", "start")}
            idempotency_key = _text(form.get("idempotency_key")) or None
            upload = form.get("file")
            csv = await upload.read() if isinstance(upload, UploadFile) else b""
    except RequestBodyTooLarge:
        return await _jobs_page(request, session, db, error=BodyTooLarge(TOO_LARGE))
    if idempotency_key is not None and not valid_idempotency_key(idempotency_key):
        raise PortalRefusal(422, "the form's idempotency key is not 1-255 printable ASCII")
    if not csv:
        refused = InvalidInput("Choose a CSV file to upload (it is empty or none was chosen).")
        return await _jobs_page(request, session, db, error=refused, form=fields)
    # The form's fields are the CSV's query parameters; an empty one is left out (its default).
    query = [(name, value) for name, value in fields.items() if value]
    try:
        created = await create_job(
            db,
            session.client.id,
            media=JobMedia.CSV,
            body=csv,
            query=query,
            idempotency_key=idempotency_key,
            settings=resources.settings,
            secrets=resources.job_secrets,
            pace=JobPace.of(resources.settings),
            now=resources.clock(),
        )
    except (InvalidInput, BodyTooLarge) as refused:
        return await _jobs_page(request, session, db, error=refused, form=fields)
    job = created.view.job
    notice = "job-drafted" if job.state is JobState.DRAFT else "job-created"
    return see_other(f"{PORTAL_PATH}/jobs/{job.public_id}?notice={notice}")


# --- one job ------------------------------------------------------------------------------------


async def _job_page(
    request: Request,
    session: PortalSession,
    db: SessionDep,
    job_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    resources = resources_of(request)
    client_id = session.client.id
    view = await job_feature.find_job(
        db,
        client_id,
        job_id,
        JobPace.of(resources.settings),
        resources.clock(),
        kept=KeptCounts(resources.redis),
    )
    rejections = await job_feature.rejections(
        db, client_id, job_id, after_line=0, size=PAGE_SIZE_DEFAULT
    )
    counts = view.counts
    return render(
        request,
        "job.html",
        {
            "view": view,
            "job": view.job,
            "counts": counts,
            # Submitted items with their final answer, of those it submits.
            "answered": counts.submitted - counts.pending,
            "moves": client_moves(view),
            "refresh_s": REFRESH_S if moves_by_itself(view) else None,
            "rejections": rejections.items,
            "more_rejections": rejections.more,
            "error": error,
        },
        session=session,
        status_code=status_code,
    )


@router.get("/jobs/{job_id}")
async def job(request: Request, job_id: str, session: PortalSessionDep, db: SessionDep) -> Response:
    return await _job_page(request, session, db, job_id)


@router.post("/jobs/{job_id}/{move}")
async def move_by_client(
    request: Request, job_id: str, move: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    await read_form(request, session)
    chosen = next((known for known in JobMove if known.value == move and known.by_client), None)
    if chosen is None:
        raise PortalRefusal(404, "no such page")
    resources = resources_of(request)
    try:
        await job_feature.move_job_by_client(
            db, session.client.id, job_id, chosen, JobPace.of(resources.settings), resources.clock()
        )
    except MoveNotPossible as refused:
        return await _job_page(
            request, session, db, job_id, error=refused.detail, status_code=refused.status
        )
    return see_other(f"{PORTAL_PATH}/jobs/{job_id}?notice=job-{chosen.value}")


@router.get("/jobs/{job_id}/results.csv")
async def results_csv(
    request: Request, job_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    """The same CSV as `GET /v1/check-jobs/{id}/results` with `Accept: text/csv`, as a file."""
    found = await job_feature.results_job(db, session.client.id, job_id)
    return StreamingResponse(
        job_feature.stream_results(resources_of(request).sessions, found, ResultForm.CSV),
        media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{found.public_id}-results.csv"'},
    )
