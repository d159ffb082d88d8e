"""The /v1/tasks routes: register one or a batch, read one, list, cancel."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from service.api.auth import pending_room
from service.api.bodies import read_json_body
from service.api.deps import ClientDep, ResourcesDep, post_route, resources_and_client
from service.api.errors import FieldProblem, invalid_input, problem_responses
from service.api.pagination import (
    CursorQuery,
    LimitQuery,
    Page,
    decode_row_cursor,
    encode_row_cursor,
)
from service.api.paths import TaskIdPath
from service.api.resources import hot_connection, on_intake_connection
from service.api.responses import json_response
from service.domain.intake import (
    BATCH_MAX_TASKS,
    CLOCK_SKEW,
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    TASK_ID_MAX_LENGTH,
    TASK_ID_PATTERN,
    Rejection,
    validate_registration,
)
from service.domain.schemas import RecheckAnswer, TaskError, TaskOut, TaskResult
from service.domain.states import TaskState
from service.features import tasks as task_feature
from service.features.paging import PAGE_SIZE_DEFAULT
from service.features.tasks import TaskRow
from service.observability.metrics import record_tasks_registered

router = APIRouter(
    prefix="/v1/tasks",
    tags=["tasks"],
    responses=problem_responses(422, 503),
)


class TaskRegistration(BaseModel):
    """A task to register. Unknown fields are refused (422)."""

    # Published in the OpenAPI schema only: register_task checks the body with
    # service.domain.intake, so the limits here are that module's.

    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(
        min_length=1,
        max_length=TASK_ID_MAX_LENGTH,
        pattern=f"^{TASK_ID_PATTERN.pattern}$",
        examples=["T-123"],
    )
    submitted_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="RFC 3339 with a timezone; defaults to now. At most "
        f"{CLOCK_SKEW.total_seconds():g} s in the future (clock skew) and not older than the task "
        "validity (PHONEBRIDGE_TASK_TTL_S).",
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Any JSON object of at most {METADATA_MAX_BYTES} bytes as compact UTF-8 "
        f"JSON, at most {METADATA_MAX_DEPTH} levels deep, without NUL characters; echoed back "
        "and in webhooks.",
    )


class TaskBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[Any] = Field(
        max_length=BATCH_MAX_TASKS,
        description=f"Up to {BATCH_MAX_TASKS} TaskRegistration objects. An invalid entry is "
        "rejected on its own; the others are kept.",
    )


class BatchOutcome(BaseModel):
    task_id: str | None
    outcome: Literal["created", "existing", "rejected"]
    detail: str | None = Field(default=None, description="Why the entry was rejected.")


class BatchResults(BaseModel):
    results: list[BatchOutcome]


def _request_body(schema_name: str, example: Any) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{schema_name}"},
                    "example": example,
                }
            },
        }
    }


@post_route(
    router,
    "",
    status_code=201,
    response_model=TaskOut,
    summary="Register a task",
    responses={
        200: {"model": TaskOut, "description": "This client had already registered that task_id"},
        201: {"description": "Registered"},
    },
    openapi_extra=_request_body(
        "TaskRegistration", {"task_id": "T-123", "metadata": {"order": "A-17"}}
    ),
)
async def register_task(request: Request) -> Response:
    resources, client = await resources_and_client(request)
    # The body is read and checked before a database connection is taken from the pool.
    entry = await read_json_body(request)
    now = resources.clock()
    checked = validate_registration(
        entry, now=now, ttl=timedelta(seconds=resources.settings.task_ttl_s)
    )
    if isinstance(checked, Rejection):
        raise invalid_input(
            checked.detail,
            [FieldProblem(field=e.field, message=e.message) for e in checked.errors],
        )
    async with pending_room(resources, request, client, 1) as room:
        row, created = await on_intake_connection(
            resources, lambda conn: task_feature.register_task(conn, client.id, checked, now)
        )
        room.created = int(created)
    record_tasks_registered(int(created))
    return json_response(task_body(row), status_code=201 if created else 200)


@post_route(
    router,
    "/batch",
    response_model=BatchResults,
    summary=f"Register up to {BATCH_MAX_TASKS} tasks",
    openapi_extra=_request_body(
        "TaskBatch", {"tasks": [{"task_id": "T-123"}, {"task_id": "T-124", "metadata": {}}]}
    ),
)
async def register_batch(request: Request) -> Response:
    resources, client = await resources_and_client(request)
    body = await read_json_body(request)
    if not isinstance(body, dict) or set(body) != {"tasks"} or not isinstance(body["tasks"], list):
        raise invalid_input('the request body must be {"tasks": [...]} and nothing else')
    entries: list[Any] = body["tasks"]
    if len(entries) > BATCH_MAX_TASKS:
        raise invalid_input(
            f"a batch holds at most {BATCH_MAX_TASKS} tasks; this one has {len(entries)}",
            [FieldProblem(field="tasks", message=f"more than {BATCH_MAX_TASKS} entries")],
        )
    now = resources.clock()
    batch = task_feature.check_batch(entries, now, timedelta(seconds=resources.settings.task_ttl_s))
    created: set[str] = set()
    if batch.distinct:
        async with pending_room(resources, request, client, len(batch.distinct)) as room:
            async with hot_connection(resources) as conn:
                created = await task_feature.register_batch(conn, client.id, batch, now)
            room.created = len(created)
        record_tasks_registered(len(created))
    results = [outcome.as_json() for outcome in task_feature.batch_outcomes(batch, created)]
    return json_response({"results": results})


@router.get(
    "",
    response_model=Page[TaskOut],
    summary="List tasks, newest first",
)
async def list_tasks(
    client: ClientDep,
    resources: ResourcesDep,
    state: Annotated[TaskState | None, Query(description="Only tasks in this state.")] = None,
    limit: LimitQuery = PAGE_SIZE_DEFAULT,
    cursor: CursorQuery = None,
) -> Response:
    before_id = decode_row_cursor(cursor) if cursor is not None else None
    async with hot_connection(resources) as conn:
        page = await task_feature.list_tasks(
            conn, client.id, state=state, before_id=before_id, size=limit
        )
    return json_response(
        {
            "data": [task_body(row) for row in page.items],
            "next_cursor": None if page.last is None else encode_row_cursor(page.last.id),
        }
    )


@router.get(
    "/{task_id}",
    response_model=TaskOut,
    summary="Read a task",
    responses=problem_responses(404),
)
async def get_task(task_id: TaskIdPath, client: ClientDep, resources: ResourcesDep) -> Response:
    async with hot_connection(resources) as conn:
        row = await task_feature.find_task(conn, client.id, task_id)
    return json_response(task_body(row))


@router.delete(
    "/{task_id}",
    response_model=TaskOut,
    summary="Cancel a pending task",
    responses=problem_responses(404, 409),
)
async def cancel_task(task_id: TaskIdPath, client: ClientDep, resources: ResourcesDep) -> Response:
    async with hot_connection(resources) as conn:
        row = await task_feature.cancel_task(conn, client.id, task_id, resources.clock())
    return json_response(task_body(row))


def task_body(row: TaskRow) -> dict[str, Any]:
    """The task as TaskOut shows it. Built by hand because it is on every intake response: the
    TaskOut round trip cost about 40 us per task. The JsonResponse renders the datetimes exactly
    as TaskOut does (RFC 3339, `Z`); a test holds the two equal."""
    return {
        "task_id": row.task_id,
        "state": row.state,
        "result": _nested(TaskResult, row.result),
        "submitted_at": row.submitted_at,
        "registered_at": row.registered_at,
        "expires_at": row.expires_at,
        "completed_at": row.completed_at,
        "next_poll_at": row.next_poll_at,
        "poll_count": row.poll_count,
        "last_error": _nested(TaskError, row.last_error),
        "upstream_request_id": row.upstream_request_id,
        "metadata": row.metadata,
        "source": row.source,
        "phone_number_masked": row.phone_number_masked,
        "rechecks": [RecheckAnswer.model_validate(entry).model_dump() for entry in row.rechecks],
        "job_id": row.job_id,
    }


def _nested(model: type[BaseModel], value: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else model.model_validate(value).model_dump()
