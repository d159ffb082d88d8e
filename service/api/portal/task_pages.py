"""The portal's task pages: the list (by state, newest first), one task with its story, and the
form that submits a check. Each reads and writes through service.features, as the REST API does."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from service.api.deps import SessionDep
from service.api.errors import ApiProblem
from service.api.portal.rendering import render
from service.api.portal.session import (
    PORTAL_PATH,
    PortalRefusal,
    PortalRoute,
    PortalSession,
    PortalSessionDep,
    read_form,
    see_other,
)
from service.api.portal.timeline import task_timeline
from service.api.resources import hot_connection, resources_of
from service.api.submitting import submit_for_client
from service.domain.checks import valid_idempotency_key, validate_check
from service.domain.intake import TASK_ID_PATTERN, Rejection
from service.domain.jsontext import json_bytes
from service.domain.phone_numbers import EXAMPLE, PHONE_NUMBER_MAX_CHARS, phone_number_rule
from service.domain.states import TaskState
from service.features import tasks as task_feature
from service.features.paging import PAGE_SIZE_DEFAULT

router = APIRouter(route_class=PortalRoute)


@router.get("/tasks")
async def tasks(
    request: Request,
    session: PortalSessionDep,
    state: Annotated[TaskState | None, Query()] = None,
    before: Annotated[int | None, Query(ge=1)] = None,
    find: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    if find:
        find = find.strip()
        if TASK_ID_PATTERN.fullmatch(find) is None:
            raise PortalRefusal(422, "a task id is 1-128 characters of A-Za-z0-9._:-")
        return see_other(f"{PORTAL_PATH}/tasks/{find}")
    async with hot_connection(resources_of(request)) as conn:
        page = await task_feature.list_tasks(
            conn, session.client.id, state=state, before_id=before, size=PAGE_SIZE_DEFAULT
        )
    return render(
        request,
        "tasks.html",
        {
            "tasks": page.items,
            "state": state,
            "states": list(TaskState),
            "next_before": None if page.last is None else page.last.id,
        },
        session=session,
    )


@router.get("/tasks/{task_id}")
async def task(
    request: Request, task_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    async with hot_connection(resources_of(request)) as conn:
        found = await task_feature.task_with_story(conn, db, session.client.id, task_id)
    return render(
        request,
        "task.html",
        {
            "task": found.task,
            "story": found.story,
            "deliveries": found.deliveries,
            "timeline": task_timeline(found.task, found.story, found.deliveries),
            "metadata_json": json_bytes(found.task.metadata, indent=True).decode(),
        },
        session=session,
    )


# --- submitting a check -------------------------------------------------------------------------


def _check_form(
    request: Request,
    session: PortalSession,
    *,
    phone_number: str = "",
    metadata: str = "",
    error: str | None = None,
    code: str | None = None,
    status_code: int = 200,
) -> Response:
    # A fresh Idempotency-Key per form shown: posting the same form twice (back, then submit
    # again) answers the first answer again instead of submitting a second check.
    return render(
        request,
        "check.html",
        {
            "phone_number": phone_number,
            "metadata": metadata,
            "idempotency_key": f"portal-{secrets.token_hex(16)}",
            "error": error,
            "code": code,
            "phone_rule": phone_number_rule(resources_of(request).settings.check_countries),
            "phone_example": EXAMPLE,
            "phone_max_chars": PHONE_NUMBER_MAX_CHARS,
        },
        session=session,
        status_code=status_code,
    )


@router.get("/checks/new")
async def check_form(request: Request, session: PortalSessionDep) -> Response:
    return _check_form(request, session)


@router.post("/checks")
async def submit_check(request: Request, session: PortalSessionDep) -> Response:
    fields = await read_form(request, session)
    phone_number = fields.get("phone_number", "").strip()
    metadata_text = fields.get("metadata", "").strip()

    def again(error: str, status_code: int, code: str | None = None) -> Response:
        return _check_form(
            request,
            session,
            phone_number=phone_number,
            metadata=metadata_text,
            error=error,
            code=code,
            status_code=status_code,
        )

    body: dict[str, Any] = {"phone_number": phone_number}
    if metadata_text:
        try:
            body["metadata"] = orjson.loads(metadata_text)
        except orjson.JSONDecodeError:
            return again("metadata: is not valid JSON (leave it empty, or give an object)", 422)
    idempotency_key = fields.get("idempotency_key") or None
    if idempotency_key is not None and not valid_idempotency_key(idempotency_key):
        raise PortalRefusal(422, "the form's idempotency key is not 1-255 printable ASCII")
    resources = resources_of(request)
    checked = validate_check(body, resources.settings.check_countries)
    if isinstance(checked, Rejection):
        return again(checked.detail, 422)
    try:
        answer = await submit_for_client(
            resources, request, session.client, checked, idempotency_key
        )
    except ApiProblem as problem:
        return again(problem.detail, problem.status)
    answered = orjson.loads(answer.body_json)
    if answer.is_problem:
        return again(str(answered.get("detail", "")), answer.status, answer.code)
    return see_other(f"{PORTAL_PATH}/tasks/{answered['task_id']}?notice=submitted")
